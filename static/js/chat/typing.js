/* "Typing in another window…": `typing` frames from the person's other pages and programs
 * (the server never sends a socket its own). Hidden on `is_typing: false`, when that window
 * leaves, or a few seconds after the last repeat (a closed tab may never send false). */

import { $, S } from "./util.js";

const HIDE_AFTER_MS = 6000;  // pages repeat `true` every 3 s while typing
const line = $("typing-line");
let timer = null;

export function onTyping(frame) {
  clearTimeout(timer);
  if (!frame.is_typing) { line.hidden = true; return; }
  line.textContent = S.typing_elsewhere;
  line.hidden = false;
  timer = setTimeout(() => { line.hidden = true; }, HIDE_AFTER_MS);
}
