/**
 * The worker-side objects tools need besides the engine (catalogs, routers, clients). Each worker
 * kind adds one field here and builds it in createServer.
 */
export interface Services {
  /** Extra cleanup (closing HTTP pools, …) run by createServer's close(), in order. */
  closers: Array<() => Promise<void>>;
}
