// The page's only way to the server: the public /v1 API, with the API key (if any) attached.

const KEY_STORAGE = "relisten.apiKey";
let memoryKey = ""; // used when localStorage is unavailable

/** Fires "auth-required" when the server answers 401, so the page can ask for a key. */
export const auth = new EventTarget();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage can be disabled; the key then lasts until the page is closed.
  }
  memoryKey = key;
}

function currentKey() {
  return apiKey() || memoryKey;
}

export function authHeaders() {
  const key = currentKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The URL with ?access_token= added when a key is set (for EventSource, which cannot send headers). */
export function withToken(path) {
  const key = currentKey();
  if (!key) return path;
  const url = new URL(path, window.location.href);
  url.searchParams.set("access_token", key);
  return url.pathname + url.search;
}

function unauthorized() {
  auth.dispatchEvent(new Event("auth-required"));
  return new ApiError(401, "unauthorized", "This server needs a valid API key.");
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not the API's error shape; keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/** fetch() against the API: adds the key, turns non-2xx answers into ApiError. */
export async function request(path, { method = "GET", body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal, headers: { ...authHeaders(), ...headers } });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  if (response.status === 401) throw unauthorized();
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJSON(path, options = {}) {
  const response = await request(path, { ...options, headers: { Accept: "application/json" } });
  return response.json();
}

/**
 * POST a multipart form with XMLHttpRequest, whose upload progress fetch() cannot report.
 * onProgress(loaded, total) follows the bytes sent; onSent() fires once they are all sent
 * (the server then validates and normalises the audio before it answers).
 */
export function upload(path, form, { onProgress, onSent } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.responseType = "json";
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (onProgress) onProgress(event.loaded, event.lengthComputable ? event.total : 0);
    });
    xhr.upload.addEventListener("load", () => onSent && onSent());
    xhr.addEventListener("load", () => {
      const body = xhr.response;
      if (xhr.status === 401) {
        reject(unauthorized());
      } else if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve(body);
      } else {
        const error = body && body.error ? body.error : {};
        reject(new ApiError(xhr.status, error.code || `http_${xhr.status}`, error.message || "The upload failed."));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "The upload was interrupted.")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was cancelled.")));
    xhr.send(form);
  });
}
