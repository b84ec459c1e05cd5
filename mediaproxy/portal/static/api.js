// The admin API from the portal. The access token lives in this module's memory only; the
// refresh token is an HttpOnly cookie the page never sees, rotated through the portal's session
// routes with the CSRF token (a readable cookie bound to the refresh token).
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
export const API = meta("mp-api");
export const PORTAL = meta("mp-portal");
const CSRF_COOKIE = "mediaproxy_portal_csrf";

let access = null;
let me = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function onSignedOut(fn) { listeners.add(fn); }
export function admin() { return me; }
export function signedIn() { return access !== null; }

function csrf() {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === CSRF_COOKIE) return decodeURIComponent(v.join("="));
  }
  return "";
}

async function errorOf(res) {
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && typeof body.error === "string") msg = body.error;
  } catch { /* not JSON */ }
  return new ApiError(res.status, msg);
}

async function session(path, body, withCsrf = true) {
  const headers = { "Content-Type": "application/json" };
  if (withCsrf) headers["X-CSRF-Token"] = csrf();
  const res = await fetch(`${PORTAL}/session${path}`, {
    method: "POST", headers, body: JSON.stringify(body || {}), credentials: "same-origin",
  });
  if (!res.ok) throw await errorOf(res);
  return res.status === 204 ? null : res.json();
}

export async function signIn(email, password) {
  const out = await session("", { email, password }, false);
  access = out.accessToken;
  me = out.admin;
  return me;
}

// One refresh at a time across the portal's tabs: the refresh token is single use, and a second
// tab presenting the one the first just rotated would end the session (reuse detection).
let pending = null;
export function refresh() {
  if (pending) return pending;
  const run = async () => {
    try {
      const out = await session("/refresh");
      access = out.accessToken;
      me = out.admin;
      return true;
    } catch (e) {
      access = null;
      if (e.status === 401 || e.status === 403) return false;
      throw e;
    }
  };
  pending = (navigator.locks ? navigator.locks.request("mediaproxy-portal-refresh", run) : run())
    .finally(() => { pending = null; });
  return pending;
}

export async function signOut(everywhere = false) {
  try {
    await session("/logout", { everywhere });
  } finally {
    access = null;
    me = null;
  }
}

function ended() {
  access = null;
  for (const fn of listeners) fn();
  return new ApiError(401, "Your session has ended: sign in again.");
}

// The API's answer (a Response that is ok): one refresh and a retry on a 401, the API's error otherwise.
async function send(method, path, body) {
  if (access === null && !(await refresh())) throw ended();
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { Authorization: `Bearer ${access}` };
    const init = { method, headers, credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(`${API}/admin${path}`, init);
    if (res.status === 401 && attempt === 0) {
      if (await refresh()) continue;
      throw ended();
    }
    if (res.status === 401) throw ended();
    if (!res.ok) throw await errorOf(res);
    return res;
  }
  throw ended();
}

export async function call(method, path, body) {
  const res = await send(method, path, body);
  return res.status === 204 ? null : res.json();
}

// Images at one size in one answer (multipart/form-data, a part per id that is a ready image):
// a Map of id to its Blob.
export async function thumbnails(ids, w, hgt, fit = "cover") {
  const out = new Map();
  if (!ids.length) return out;
  const res = await send("GET", `/images/thumbnails${query({ ids: ids.join(","), w, h: hgt, fit })}`);
  for (const [id, file] of await res.formData()) out.set(id, file);
  return out;
}

export const get = (path) => call("GET", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// An upload with progress (fetch cannot report it): onProgress(loaded, total).
export async function upload(path, form, onProgress) {
  if (access === null && !(await refresh())) throw ended();
  const send = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/admin${path}`);
    xhr.setRequestHeader("Authorization", `Bearer ${access}`);
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0));
    xhr.addEventListener("load", () => resolve(xhr));
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed: network error")));
    xhr.send(form);
  });
  let xhr = await send();
  if (xhr.status === 401) {
    if (!(await refresh())) throw ended();
    xhr = await send();
  }
  let body = null;
  try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
  if (xhr.status >= 400) throw new ApiError(xhr.status, (body && body.error) || `${xhr.status}`);
  return body;
}
