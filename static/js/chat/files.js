/* A message's attachments, as the page shows them: an image's thumbnail (a link to the full
 * image) or a chip for a PDF or text file (a download). Built from data, never from HTML, so a
 * file name cannot inject markup. Used for live frames and reloaded history alike. */

import { S, make } from "./util.js";

export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n >= 1024 * 1024) return (n / (1024 * 1024)).toFixed(1).replace(/\.0$/, "") + " MB";
  if (n >= 1024) return Math.round(n / 1024) + " KB";
  return n + " B";
}

function fileLink(file, className) {
  const a = make("a", className);
  a.href = file.file_url;
  a.rel = "noopener";
  a.target = "_blank";
  return a;
}

/** The list under a message's text; null when it has none. */
export function renderAttachments(files) {
  if (!Array.isArray(files) || !files.length) return null;
  const box = make("div", "msg-files");
  files.forEach((file) => {
    if (file.thumbnail_url) {
      const a = fileLink(file, "msg-thumb-link");
      const img = make("img", "msg-thumb");
      img.src = file.thumbnail_url;
      img.alt = file.name || S.attachment;
      img.loading = "lazy";
      img.decoding = "async";
      a.title = file.name || "";
      a.appendChild(img);
      box.appendChild(a);
    } else {
      const a = fileLink(file, "file-chip");
      a.setAttribute("download", file.name || "");
      a.append(make("span", "file-chip-icon", file.type === "application/pdf" ? "PDF" : "TXT"),
        make("span", "file-chip-name", file.name || S.attachment),
        make("span", "file-chip-size", formatSize(file.size)));
      box.appendChild(a);
    }
  });
  return box;
}
