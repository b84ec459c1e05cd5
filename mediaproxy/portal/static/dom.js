// Elements from data without markup: every text goes in as a text node (textContent), never
// through innerHTML, so a filename, tag, description or client name is shown, never run.
const SVG = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" || k === "checked" || k === "disabled" || k === "hidden" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG, tag), attrs, children);

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
export const date = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "–");

export function say(message, kind = "info") {
  const el = document.getElementById("status");
  el.className = `status ${kind}`;
  el.textContent = message;
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

// A confirmation as a modal <dialog> (keyboard and screen-reader friendly): resolves true or false.
export function confirmDialog(question, action = "Delete") {
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", class: "danger", value: "yes" }, action);
    const no = h("button", { type: "button", value: "no" }, "Cancel");
    const d = h("dialog", { "aria-labelledby": "confirm-q", class: "confirm" },
      h("p", { id: "confirm-q" }, question), h("div", { class: "row" }, no, yes));
    const done = (v) => { d.close(); d.remove(); resolve(v); };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    d.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(d);
    d.showModal();
    no.focus();
  });
}

// BlurHash (https://blurha.sh, the format the library stores) decoded into a small canvas: the
// placeholder shown while a thumbnail loads. The format is a few dozen lines; the canvas is
// drawn at 16×16 (a hundred of them in a few milliseconds) and scaled by CSS.
const B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
const d83 = (str) => { let v = 0; for (const c of str) v = v * 83 + B83.indexOf(c); return v; };
const toLinear = (v) => { const x = v / 255; return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
const toSrgb = (v) => {
  const x = Math.max(0, Math.min(1, v));
  return Math.round(x <= 0.0031308 ? x * 12.92 * 255 : (1.055 * x ** (1 / 2.4) - 0.055) * 255);
};
const signPow = (v, e) => Math.sign(v) * Math.abs(v) ** e;

export function blurhash(hash, width = 16, height = 16) {
  if (!hash || hash.length < 6) return null;
  const size = d83(hash[0]);
  const nx = (size % 9) + 1;
  const ny = Math.floor(size / 9) + 1;
  if (hash.length !== 4 + 2 * nx * ny) return null;
  const maxAc = (d83(hash[1]) + 1) / 166;
  const colors = [];
  const dc = d83(hash.slice(2, 6));
  colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
  for (let i = 1; i < nx * ny; i++) {
    const v = d83(hash.slice(4 + i * 2, 6 + i * 2));
    const q = [Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19];
    colors.push(q.map((c) => signPow((c - 9) / 9, 2) * maxAc));
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0; let g = 0; let b = 0;
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const c = colors[i + j * nx];
          r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
        }
      }
      const o = 4 * (x + y * width);
      img.data[o] = toSrgb(r); img.data[o + 1] = toSrgb(g); img.data[o + 2] = toSrgb(b); img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  canvas.setAttribute("aria-hidden", "true");
  canvas.className = "placeholder";
  return canvas;
}

// Charts: a bar chart in SVG with a text alternative (the table beside it carries the figures).
export function barChart(rows, { label, value, format = num, title }) {
  const w = 640; const barH = 22; const gap = 6; const left = 150; const right = 90;
  const max = Math.max(1, ...rows.map(value));
  const height = rows.length * (barH + gap) + gap;
  const svg = s("svg", { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": title, class: "chart" },
    s("title", {}, title));
  rows.forEach((r, i) => {
    const y = gap + i * (barH + gap);
    const bw = Math.max(1, ((w - left - right) * value(r)) / max);
    svg.append(
      s("text", { x: left - 8, y: y + barH * 0.7, "text-anchor": "end", class: "axis" }, label(r)),
      s("rect", { x: left, y, width: bw, height: barH, rx: 3, class: "bar" }),
      s("text", { x: left + bw + 6, y: y + barH * 0.7, class: "value" }, format(value(r))),
    );
  });
  return svg;
}

export function columnChart(rows, { label, value, title, format = num }) {
  const w = 640; const h = 200; const bottom = 24; const top = 16;
  const max = Math.max(1, ...rows.map(value));
  const step = w / Math.max(1, rows.length);
  const svg = s("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title, class: "chart" },
    s("title", {}, title));
  rows.forEach((r, i) => {
    const bh = ((h - bottom - top) * value(r)) / max;
    const rect = s("rect", { x: i * step + 1, y: h - bottom - bh, width: Math.max(1, step - 2), height: bh,
      class: "bar" }, s("title", {}, `${label(r)}: ${format(value(r))}`));
    svg.append(rect);
    if (i % Math.ceil(rows.length / 6) === 0) {
      svg.append(s("text", { x: i * step, y: h - 6, class: "axis" }, label(r)));
    }
  });
  svg.append(s("text", { x: 0, y: 12, class: "axis" }, `max ${format(max)}`));
  return svg;
}
