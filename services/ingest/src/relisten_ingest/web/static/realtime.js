// The page's live mode: the microphone (getUserMedia) through an AudioWorklet that resamples to
// pcm16 at 24 kHz, streamed over a WebSocket to GET /v1/realtime?intent=transcription in OpenAI's
// realtime transcription protocol. First-pass words appear as they are heard (deltas); when a turn
// ends its refined text replaces them, shaded by confidence, with the corrections shown as
// before -> after. Stop ends the session and links the job it was stored as.
//
// The key travels as ?access_token= (a browser WebSocket cannot send an Authorization header).

import { auth, withToken } from "./api.js";
import { el, percent } from "./transcript.js";

const DELTA = "conversation.item.input_audio_transcription.delta";
const COMPLETED = "conversation.item.input_audio_transcription.completed";
const FAILED = "conversation.item.input_audio_transcription.failed";
const REFINED = "relisten.turn.refined";
const BENIGN_ERRORS = new Set(["input_audio_buffer_commit_empty"]);
const FINISH_TIMEOUT_MS = 60000; // waiting for the last turns after Stop
const REFINED_GRACE_MS = 3000; // a completed turn's refinement follows at once, or never

const $ = (id) => document.getElementById(id);

function show(node, visible = true) {
  node.hidden = !visible;
}

function message(node, text) {
  node.textContent = text || "";
  show(node, Boolean(text));
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function realtimeUrl() {
  const url = new URL(withToken("/v1/realtime?intent=transcription"), window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

function sessionUpdate() {
  const transcription = {};
  const language = ($("language") && $("language").value.trim()) || "";
  if (language && language !== "auto") transcription.language = language;
  const prompt = ($("prompt") && $("prompt").value.trim()) || "";
  if (prompt) transcription.prompt = prompt;
  return {
    type: "session.update",
    session: {
      type: "transcription",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: 24000 },
          transcription,
          turn_detection: { type: "server_vad" },
        },
      },
      include: ["item.input_audio_transcription.logprobs"],
    },
  };
}

function jobIdOf(event) {
  for (const holder of [event, event.session, event.relisten, event.session && event.session.relisten]) {
    if (holder && typeof holder.job_id === "string") return holder.job_id;
  }
  return null;
}

/** One live session: microphone -> worklet -> WebSocket, and the turns the server sends back. */
class LiveSession {
  constructor(view) {
    this.view = view;
    this.turns = new Map(); // item_id -> {id, deltas, completed, refined, failed, committed, startMs, completedAt}
    this.jobId = null;
    this.refines = false; // the server has sent relisten.turn.refined at least once
    this.ws = null;
    this.context = null;
    this.stream = null;
    this.node = null;
    this.ended = false;
    this.audioEnded = false; // Stop has sent the last audio and the final commit
    this.commitRefused = false; // ... and the server found nothing left to commit
    this.changed = () => {};
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      // No automatic gain or noise suppression: they clip and colour speech, and Whisper copes with
      // level and noise better than with their artefacts. Echo cancellation stays (speakers on).
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/static/mic-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm16-resampler", { numberOfInputs: 1, numberOfOutputs: 0 });
    await this.connect();
    this.node.port.onmessage = (event) => {
      const data = event.data;
      if (data.type === "pcm" && this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(data.buffer) }));
      } else if (data.type === "flushed" && this.onFlushed) {
        this.onFlushed();
      }
    };
    this.context.createMediaStreamSource(this.stream).connect(this.node);
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(realtimeUrl());
      this.ws = ws;
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        ws.send(JSON.stringify(sessionUpdate()));
        resolve();
      });
      ws.addEventListener("message", (event) => {
        let parsed;
        try {
          parsed = JSON.parse(event.data);
        } catch {
          return;
        }
        this.apply(parsed);
      });
      ws.addEventListener("close", (event) => {
        if (!opened) {
          reject(new Error("The live session could not start: the server refused it or cannot be reached."));
          return;
        }
        this.releaseAudio();
        if (!this.ended) {
          this.ended = true;
          this.view.closed(event);
          if (this.onClosedByServer) this.onClosedByServer();
        }
      });
    });
  }

  turn(id) {
    if (!this.turns.has(id)) {
      this.turns.set(id, { id, deltas: "", completed: null, refined: null, failed: null, committed: false, startMs: null });
    }
    return this.turns.get(id);
  }

  apply(event) {
    const type = String(event.type || "");
    this.jobId = this.jobId || jobIdOf(event);
    if (type === "error") {
      const error = event.error || {};
      if (BENIGN_ERRORS.has(error.code)) {
        if (this.audioEnded) this.commitRefused = true;
        this.changed();
        return;
      }
      if (["missing_api_key", "invalid_api_key"].includes(error.code)) auth.dispatchEvent(new Event("auth-required"));
      this.view.error(`${error.message || "The server reported an error."} (${error.code || "error"})`);
      return;
    }
    if (type === "relisten.session.degraded") {
      this.view.notice(event.message || "The server cannot keep up: turns complete with first-pass text.");
    } else if (type === "relisten.session.recovered") {
      this.view.notice("");
    }
    const id = event.item_id;
    if (typeof id !== "string") {
      this.changed();
      return;
    }
    const turn = this.turn(id);
    if (type === "input_audio_buffer.speech_started") turn.startMs = Number(event.audio_start_ms) || 0;
    else if (type === "input_audio_buffer.committed") turn.committed = true;
    else if (type === DELTA) turn.deltas += event.delta || "";
    else if (type === COMPLETED) {
      turn.completed = event.transcript || "";
      turn.completedAt = Date.now();
    } else if (type === FAILED) turn.failed = event.error || { message: "transcription failed" };
    else if (type === REFINED) {
      turn.refined = event;
      this.refines = true;
      if (turn.completed === null && typeof event.transcript === "string") turn.completed = event.transcript;
    }
    this.view.renderTurn(turn, this.ordered());
    this.changed();
  }

  ordered() {
    const arrival = [...this.turns.keys()];
    return [...this.turns.values()].sort(
      (a, b) => (a.startMs ?? Infinity) - (b.startMs ?? Infinity) || arrival.indexOf(a.id) - arrival.indexOf(b.id),
    );
  }

  /** Turns still to hear about. After Stop's commit a turn still open counts too (that commit ends
   * it), unless the server answered that there was nothing to commit. */
  pending() {
    const now = Date.now();
    const waitingOpen = this.audioEnded && !this.commitRefused;
    return [...this.turns.values()].filter(
      (turn) =>
        ((turn.committed || waitingOpen) && turn.completed === null && !turn.failed) ||
        (this.refines && turn.completed !== null && !turn.refined && now - turn.completedAt < REFINED_GRACE_MS),
    );
  }

  /** Stop the microphone, send what the worklet still holds, commit, wait for the last turns, close. */
  async stop() {
    if (this.node) {
      await new Promise((resolve) => {
        this.onFlushed = resolve;
        this.node.port.postMessage("flush");
        setTimeout(resolve, 1000);
      });
    }
    this.releaseAudio();
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      this.audioEnded = true;
      ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
      const deadline = Date.now() + FINISH_TIMEOUT_MS;
      while (this.pending().length && Date.now() < deadline && ws.readyState === WebSocket.OPEN) {
        await new Promise((resolve) => {
          this.changed = resolve;
          setTimeout(resolve, 250);
        });
      }
      this.changed = () => {};
    }
    this.ended = true;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "done");
  }

  releaseAudio() {
    if (this.node) {
      this.node.port.postMessage("stop");
      this.node.disconnect();
      this.node = null;
    }
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}

// ---------------------------------------------------------------- rendering

function wordSpan(word) {
  const probability = Math.max(0, Math.min(1, Number(word.probability ?? 1)));
  const label = String(word.word || "").trim();
  const classes = ["w"];
  if (word.source === "second") classes.push("second");
  const notes = [`${percent(probability)} sure`];
  if (word.source === "second") notes.push("re-listened");
  const span = el("span", { class: classes.join(" "), title: notes.join(" · ") }, label);
  span.style.setProperty("--doubt", (1 - probability).toFixed(3));
  return span;
}

function correctionOf(item) {
  let status = item.status;
  if (!status && "accepted" in item) status = item.accepted ? "accepted" : "rejected";
  return {
    before: String(item.before ?? item.original_text ?? "").trim(),
    after: String(item.after ?? item.corrected_text ?? "").trim(),
    status: status || "accepted",
    start: typeof item.start === "number" ? item.start : null,
    end: typeof item.end === "number" ? item.end : null,
  };
}

/** The refined turn's words, with each accepted correction's first-pass text struck through
 * just before the words that replaced it. */
function refinedContent(turn) {
  const refined = turn.refined;
  const words = Array.isArray(refined.words) ? refined.words : [];
  const corrections = (refined.corrections || []).map(correctionOf);
  const accepted = corrections.filter((c) => c.status === "accepted" && c.before !== c.after);
  const nodes = [];
  if (!words.length) {
    nodes.push(el("span", { class: "turn-text" }, turn.completed || ""));
  } else {
    const placed = new Set();
    words.forEach((word, index) => {
      const middle = (Number(word.start) + Number(word.end)) / 2;
      const correction = accepted.find(
        (c) => !placed.has(c) && c.start !== null && middle >= c.start - 0.02 && middle <= c.end + 0.02,
      );
      if (index > 0) nodes.push(" ");
      if (correction) {
        placed.add(correction);
        if (correction.before) nodes.push(el("del", { class: "before", title: "first pass" }, correction.before), " ");
      }
      nodes.push(wordSpan(word));
    });
    for (const correction of accepted.filter((c) => !placed.has(c))) {
      nodes.push(" ", el("span", { class: "change" }, el("del", { class: "before" }, correction.before), " → ", el("ins", { class: "after" }, correction.after)));
    }
  }
  const rejected = corrections.filter((c) => c.status !== "accepted");
  if (rejected.length) {
    const titles = rejected.map((c) => `${c.status}: ${c.before} → ${c.after}`).join("\n");
    nodes.push(" ", el("span", { class: "tag", title: titles }, `${rejected.length} kept`));
  }
  return nodes;
}

class LiveView {
  constructor() {
    this.container = $("live-transcript");
  }

  reset() {
    this.container.replaceChildren(el("p", { class: "hint", text: "Listening… speak, and the words appear here." }));
    message($("live-error"), "");
    message($("live-notice"), "");
    show($("live-job"), false);
  }

  state(name, text) {
    $("live-body").dataset.state = name;
    const badge = $("live-badge");
    badge.textContent = text;
    badge.className = name === "listening" ? "tag live" : name === "ended" ? "tag final" : "tag";
  }

  renderTurn(turn, ordered) {
    let node = this.container.querySelector(`[data-item="${CSS.escape(turn.id)}"]`);
    if (!node) {
      this.container.querySelector(":scope > .hint")?.remove();
      node = el("p", { class: "turn", "data-item": turn.id });
      const index = ordered.indexOf(turn);
      const next = ordered.slice(index + 1).map((t) => this.container.querySelector(`[data-item="${CSS.escape(t.id)}"]`)).find(Boolean);
      this.container.insertBefore(node, next || null);
    }
    let content;
    if (turn.failed) {
      node.dataset.state = "failed";
      content = [el("span", { class: "delta" }, turn.deltas.trim()), " ", el("span", { class: "tag" }, "failed")];
    } else if (turn.refined) {
      node.dataset.state = "refined";
      content = refinedContent(turn);
    } else if (turn.completed !== null) {
      node.dataset.state = "completed";
      content = [el("span", { class: "turn-text" }, turn.completed.trim())];
    } else {
      node.dataset.state = "open";
      content = [el("span", { class: "delta" }, turn.deltas.trim())];
    }
    node.replaceChildren(...content);
    node.scrollIntoView({ block: "nearest" });
  }

  error(text) {
    message($("live-error"), text);
  }

  notice(text) {
    message($("live-notice"), text);
  }

  closed(event) {
    this.state("ended", "ended");
    // The error event that came before the close says more than its close code: keep it.
    if (event.code !== 1000 && $("live-error").hidden) {
      this.error(`The server ended the live session${event.reason ? `: ${event.reason}` : ""} (${event.code}).`);
    }
    $("live-start").disabled = false;
    show($("live-stop"), false);
  }

  linkJob(jobId) {
    if (!jobId) return;
    const link = $("live-job-link");
    link.href = `#/jobs/${jobId}`;
    link.textContent = jobId.slice(0, 8);
    show($("live-job"));
  }
}

// ---------------------------------------------------------------- wiring

let current = null;
const view = new LiveView();

function showLivePanel(visible) {
  show($("live-body"), visible);
  if (visible) {
    show($("job-empty"), false);
    show($("job-body"), false);
  }
}

async function start() {
  if (current) return;
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    message($("live-status-error"), "This browser cannot capture the microphone here (it needs a secure page: https or localhost).");
    return;
  }
  $("live-start").disabled = true;
  message($("live-status-error"), "");
  showLivePanel(true);
  view.reset();
  view.state("starting", "starting");
  const session = new LiveSession(view);
  current = session;
  session.onClosedByServer = () => {
    if (current === session) current = null;
    view.linkJob(session.jobId);
  };
  try {
    await session.start();
  } catch (error) {
    session.releaseAudio();
    current = null;
    $("live-start").disabled = false;
    view.state("failed", "not started");
    const text = error && error.name === "NotAllowedError" ? "The microphone was not allowed." : String(error.message || error);
    view.error(text);
    message($("live-status-error"), text);
    return;
  }
  view.state("listening", "listening");
  show($("live-stop"));
  $("live-stop").disabled = false;
}

async function stop() {
  const session = current;
  if (!session) return;
  $("live-stop").disabled = true;
  view.state("finishing", "finishing the last turn");
  await session.stop();
  current = null;
  view.state("ended", "ended");
  view.linkJob(session.jobId);
  // The session is stored as a job once its socket has closed: let the job list show it.
  setTimeout(() => window.dispatchEvent(new Event("relisten:jobs-changed")), 1500);
  show($("live-stop"), false);
  $("live-start").disabled = false;
}

export function initLive() {
  $("live-start").addEventListener("click", start);
  $("live-stop").addEventListener("click", stop);
  // A job chosen from the list (or the stored live job) takes the panel back, unless live is on.
  window.addEventListener("hashchange", () => {
    if (!current && /^#\/jobs\//.test(window.location.hash)) show($("live-body"), false);
  });
}
