/**
 * Text as keystrokes on a US keyboard, for guests without a clipboard agent (firmware, installers, text
 * consoles): each character becomes the KeyboardEvent.code values to press together, Shift first where
 * the US layout needs it. Characters a US keyboard cannot type are skipped (and counted).
 */

/** The most characters one "Type text" sends. */
export const MAX_TYPED = 1000;
/** Between two characters: a PS/2 keyboard's queue in QEMU holds only so many scancodes. */
export const CHARACTER_INTERVAL_MS = 10;

const UNSHIFTED = {
  "`": "Backquote", "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight", "\\": "Backslash",
  ";": "Semicolon", "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash", " ": "Space",
  "\n": "Enter", "\t": "Tab",
};
const SHIFTED = {
  "~": "Backquote", "!": "Digit1", "@": "Digit2", "#": "Digit3", $: "Digit4", "%": "Digit5", "^": "Digit6",
  "&": "Digit7", "*": "Digit8", "(": "Digit9", ")": "Digit0", _: "Minus", "+": "Equal", "{": "BracketLeft",
  "}": "BracketRight", "|": "Backslash", ":": "Semicolon", '"': "Quote", "<": "Comma", ">": "Period", "?": "Slash",
};

/**
 * The keys that type `character` on a US keyboard, or null if it has none.
 * @param {string} character one character
 * @returns {string[]|null} KeyboardEvent.code values, pressed in order and released in reverse
 */
export function keysFor(character) {
  if (/^[a-z]$/.test(character)) return [`Key${character.toUpperCase()}`];
  if (/^[A-Z]$/.test(character)) return ["ShiftLeft", `Key${character}`];
  if (/^[0-9]$/.test(character)) return [`Digit${character}`];
  if (character in UNSHIFTED) return [UNSHIFTED[character]];
  if (character in SHIFTED) return ["ShiftLeft", SHIFTED[character]];
  return null;
}

/**
 * Type `text` (at most MAX_TYPED characters, "\r\n" as one Enter) with `press`, one character every
 * CHARACTER_INTERVAL_MS.
 * @param {string} text
 * @param {(codes: string[]) => void} press presses and releases one combination
 * @returns {Promise<{typed: number, skipped: number}>} once the last character went
 */
export async function typeText(text, press) {
  const characters = [...text.replace(/\r\n?/g, "\n")].slice(0, MAX_TYPED);
  let skipped = 0;
  for (const character of characters) {
    const codes = keysFor(character);
    if (codes === null) {
      skipped += 1;
      continue;
    }
    press(codes);
    await new Promise((resolve) => setTimeout(resolve, CHARACTER_INTERVAL_MS));
  }
  return { typed: characters.length - skipped, skipped };
}
