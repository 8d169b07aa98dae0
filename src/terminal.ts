/**
 * Text for a terminal: control characters shown as escapes, as the dashboard escapes HTML. Labels,
 * ids, task args, worker names, paths and error messages come from outside; printed raw, `ESC]0;…BEL`
 * retitles the window, `ESC[2J` clears it, OSC 52 writes the clipboard on some terminals, and a
 * bidi override makes a line read other than it is. Every CLI output and log line goes through here.
 */

/**
 * C0 controls, DEL, C1 controls (a UTF-8 terminal may take U+009B as CSI), bidi marks, embeddings,
 * overrides and isolates, and the Unicode line and paragraph separators.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function hex(char: string, width: 2 | 4): string {
  return char.charCodeAt(0).toString(16).padStart(width, '0');
}

/** `\x1b`, `\x9b`, `\n`, `\u202e`: the escape a reader sees for one control character. */
function visible(char: string): string {
  const code = char.charCodeAt(0);
  return NAMED[char] ?? (code <= 0xff ? `\\x${hex(char, 2)}` : `\\u${hex(char, 4)}`);
}

/** One value inside a line (a label, an id, a path, a message): every control character escaped, newlines too. */
export function terminalValue(value: string): string {
  return value.replace(CONTROLS, visible);
}

/**
 * A whole output of ours (a table, a report, a log line), line breaks kept: every other control
 * character escaped, so whatever a value brought in cannot steer the terminal.
 */
export function terminalText(text: string): string {
  return text.replace(CONTROLS, (char) => (char === '\n' ? char : visible(char)));
}

/**
 * JSON for a terminal: JSON.stringify already escapes C0 controls, but leaves DEL, C1 controls and
 * bidi marks raw. They become `\u009b`-style escapes, which JSON reads back as the same characters.
 */
export function terminalJson(json: string): string {
  return json.replace(CONTROLS, (char) => (char === '\n' ? char : `\\u${hex(char, 4)}`));
}
