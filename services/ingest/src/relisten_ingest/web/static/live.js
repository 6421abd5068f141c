// Live updates of one job: Server-Sent Events from GET /v1/jobs/{id}/events, or polling
// GET /v1/jobs/{id} every second when the stream is unavailable (missing route, proxy, error).

import { ApiError, getJSON, withToken } from "./api.js";

export const EVENT_NAMES = ["state", "status", "first_pass", "clip", "correction", "completed", "failed"];
const TERMINAL = new Set(["completed", "failed"]);
const POLL_MS = 1000;
const MAX_STREAM_ERRORS = 3;
const QUIET_MS = 10000; // a stream this long without an event: check the job view once

/**
 * Follows one job and calls handlers[name](payload) for the event names above. Polling
 * produces "state" (the job view) and finally "completed" or "failed", like the stream.
 * handlers.error(error) gets the ApiError that ended polling (401: no valid key; 404: no such job).
 */
export class JobFeed {
  constructor(jobId, handlers) {
    this.jobId = jobId;
    this.handlers = handlers;
    this.source = null;
    this.timer = 0;
    this.stopped = false;
    this.errors = 0;
    this.watchdog = 0;
    this.lastEvent = 0;
  }

  start() {
    if ("EventSource" in window) this.openStream();
    else this.startPolling();
  }

  stop() {
    this.stopped = true;
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
  }

  emit(name, payload) {
    const handler = this.handlers[name];
    if (handler) handler(payload);
  }

  openStream() {
    const source = new EventSource(withToken(`/v1/jobs/${encodeURIComponent(this.jobId)}/events`));
    this.source = source;
    this.lastEvent = Date.now();
    this.watchdog = setInterval(() => this.checkQuietStream(), QUIET_MS);
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (event) => {
        if (this.stopped || source !== this.source) return;
        this.errors = 0;
        this.lastEvent = Date.now();
        let payload;
        try {
          payload = JSON.parse(event.data);
        } catch {
          return; // not JSON: ignore rather than break the page
        }
        if (name === "state") {
          this.view(payload);
          return;
        }
        if (TERMINAL.has(name)) this.stop(); // before the handler, so the server's close is not an error
        this.emit(name, payload);
      });
    }
    source.addEventListener("error", () => {
      if (this.stopped || source !== this.source) return;
      this.errors += 1;
      // CLOSED: the server refused the stream (404, 401, wrong type); the browser will not retry.
      // Otherwise it reconnects by itself, and a late connection gets the current state first.
      if (source.readyState === EventSource.CLOSED || this.errors >= MAX_STREAM_ERRORS) {
        source.close();
        this.source = null;
        clearInterval(this.watchdog);
        this.startPolling();
      }
    });
  }

  /**
   * A safety net under the stream: when it has been quiet for a while (a long stage, or a stream
   * that missed the end), ask for the job view once; if the job is over, finish from it. A view
   * still running is not applied, as it may lag behind what the stream already said.
   */
  async checkQuietStream() {
    if (this.stopped || !this.source || Date.now() - this.lastEvent < QUIET_MS) return;
    let view;
    try {
      view = await getJSON(`/v1/jobs/${encodeURIComponent(this.jobId)}`);
    } catch {
      return; // the stream is still the main source; a 401 has already asked for a key
    }
    if (this.stopped || !TERMINAL.has(view.status)) return;
    this.view(view);
  }

  startPolling() {
    if (this.stopped) return;
    const tick = async () => {
      if (this.stopped) return;
      let view;
      try {
        view = await getJSON(`/v1/jobs/${encodeURIComponent(this.jobId)}`);
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 404)) {
          this.stop(); // wait for a key, or the job is gone; the page starts a new feed if needed
          this.emit("error", error);
          return;
        }
        this.timer = setTimeout(tick, POLL_MS * 2);
        return;
      }
      if (this.stopped) return;
      this.view(view);
      if (!this.stopped) this.timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  /** A job view, from the stream's "state" event or from polling; a finished job ends the feed. */
  view(view) {
    this.emit("state", view);
    if (!TERMINAL.has(view.status)) return;
    this.stop();
    if (view.status === "completed") {
      this.emit("completed", { transcript_url: view.links && view.links.transcript, stats: null });
    } else {
      this.emit("failed", { error: view.error });
    }
  }
}
