// The relisten page: upload, job list, live progress and the refining transcript.

import { ApiError, apiKey, auth, getJSON, request, setApiKey, upload } from "./api.js";
import { JobFeed } from "./live.js";
import { initLive } from "./realtime.js";
import {
  TranscriptView,
  applyCorrection,
  correctionItem,
  el,
  formatTime,
  percent,
  statsItems,
} from "./transcript.js";

const $ = (id) => document.getElementById(id);

const STAGES = ["queued", "transcribing", "correcting", "merging", "completed"];
const TERMINAL = new Set(["completed", "failed"]);
const STATUS_TEXT = {
  queued: "Queued",
  transcribing: "Transcribing",
  correcting: "Re-listening",
  merging: "Merging",
  completed: "Completed",
  failed: "Failed",
};
const DOWNLOADS = [
  ["json", "JSON"],
  ["text", "Text"],
  ["srt", "SRT"],
  ["vtt", "WebVTT"],
];
const JOB_ROUTE = /^#\/jobs\/([A-Za-z0-9_-]{1,64})$/;
const LIST_REFRESH_MS = 5000;

const page = {
  jobs: [], // job views, newest first
  jobId: null,
  generation: 0, // bumped when another job is selected; stale answers are dropped
  feed: null,
  view: null,
  lastStage: "queued",
  liveWords: null, // first-pass words with the corrections merged so far
  liveCorrections: [],
  clipsDone: new Set(),
  clipCount: 0,
  flagged: 0, // first-pass words below the job's threshold
  flagBelow: null, // that threshold, while the second pass has not answered
  final: null, // the finished transcript
  shownCorrections: [], // in the order of the list, for its play buttons
  loadingTranscript: false,
  audioUrl: "", // an object URL when the audio had to be fetched with the key
  file: null,
  uploading: false,
  listTimer: 0,
  locked: false, // the server refused the API key (or wants one): wait for the user
};

const transcript = new TranscriptView($("transcript"));
const player = $("player");

// ---------------------------------------------------------------- helpers

function show(node, visible = true) {
  node.hidden = !visible;
}

function message(node, text) {
  node.textContent = text || "";
  show(node, Boolean(text));
}

function errorText(error) {
  const text = error && error.message ? error.message : String(error);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function byteSize(bytes) {
  if (bytes < 1e6) return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date().toDateString() === date.toDateString();
  const options = today
    ? { hour: "2-digit", minute: "2-digit" }
    : { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(undefined, options).format(date);
}

function jobPath(id, rest = "") {
  return `/v1/jobs/${encodeURIComponent(id)}${rest}`;
}

// ---------------------------------------------------------------- API key

const keyForm = $("key-form");
const keyInput = $("api-key");
const keyForget = $("key-forget");

function askForKey() {
  const hadKey = Boolean(apiKey());
  $("key-hint").textContent = hadKey
    ? "The saved API key was refused. Enter another one."
    : "This server needs an API key. It is kept in this browser only.";
  show(keyForm);
  show(keyForget, false);
  if (document.activeElement !== keyInput) keyInput.focus();
}

// Until a key is given, nothing more is asked of the server (each refusal is a console error).
auth.addEventListener("auth-required", () => {
  page.locked = true;
  clearTimeout(page.listTimer);
  if (page.feed) page.feed.stop();
  page.feed = null;
  if (page.jobId) message($("job-live"), "Enter the API key above to follow this job.");
  askForKey();
});

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  setApiKey(key);
  page.locked = false;
  keyInput.value = "";
  show(keyForm, false);
  show(keyForget);
  refreshJobs();
  if (page.jobId) selectJob(page.jobId, { force: true });
});

keyForget.addEventListener("click", () => {
  setApiKey("");
  show(keyForget, false);
  refreshJobs();
});

show(keyForget, Boolean(apiKey()));

// ---------------------------------------------------------------- upload

const uploadForm = $("upload-form");
const fileInput = $("file");
const drop = $("drop");
const uploadButton = $("upload-button");
const threshold = $("threshold");

function chooseFile(file) {
  page.file = file || null;
  const name = $("drop-file");
  if (page.file) {
    name.textContent = `${page.file.name} · ${byteSize(page.file.size)}`;
    drop.classList.add("chosen");
  } else {
    name.textContent = "";
    drop.classList.remove("chosen");
  }
  show(name, Boolean(page.file));
  uploadButton.disabled = !page.file || page.uploading;
  message($("upload-error"), "");
}

fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));

for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    drop.classList.add("dragging");
  });
}
for (const name of ["dragleave", "dragend"]) {
  drop.addEventListener(name, (event) => {
    if (!drop.contains(event.relatedTarget)) drop.classList.remove("dragging");
  });
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) chooseFile(file);
});
// A file dropped beside the zone must not make the browser leave the page to open it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

threshold.addEventListener("input", () => {
  $("threshold-value").textContent = Number(threshold.value).toFixed(2);
});

uploadForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!page.file || page.uploading) return;
  const form = new FormData();
  form.append("file", page.file, page.file.name);
  const language = $("language").value.trim();
  if (language) form.append("language", language);
  const prompt = $("prompt").value.trim();
  if (prompt) form.append("prompt", prompt);
  form.append("correction", uploadForm.elements.correction.value);
  form.append("task", uploadForm.elements.task.value);
  form.append("confidence_threshold", threshold.value);

  const bar = $("upload-bar");
  const status = $("upload-status");
  page.uploading = true;
  uploadButton.disabled = true;
  uploadButton.textContent = "Uploading…";
  message($("upload-error"), "");
  bar.value = 0;
  bar.removeAttribute("max");
  status.textContent = "Starting the upload…";
  show($("upload-progress"));
  try {
    const view = await upload("/v1/jobs", form, {
      onProgress(loaded, total) {
        if (!total) return;
        bar.max = 100;
        bar.value = (loaded / total) * 100;
        status.textContent = `Uploading ${percent(loaded / total)} · ${byteSize(loaded)} of ${byteSize(total)}`;
      },
      onSent() {
        bar.removeAttribute("value"); // indeterminate while the server decodes the audio
        status.textContent = "Uploaded. Checking and normalising the audio…";
      },
    });
    status.textContent = `Accepted as job ${view.id.slice(0, 8)}.`;
    bar.max = 100;
    bar.value = 100;
    fileInput.value = "";
    chooseFile(null);
    upsertJob(view);
    window.location.hash = `#/jobs/${view.id}`;
    setTimeout(() => show($("upload-progress"), false), 2500);
  } catch (error) {
    show($("upload-progress"), false);
    message($("upload-error"), errorText(error));
  } finally {
    page.uploading = false;
    uploadButton.textContent = "Transcribe";
    uploadButton.disabled = !page.file;
  }
});

// ---------------------------------------------------------------- job list

const jobList = $("jobs");

function jobItem(view) {
  const running = !TERMINAL.has(view.status);
  const link = el(
    "a",
    {
      class: "job-item",
      href: `#/jobs/${view.id}`,
      "aria-current": view.id === page.jobId ? "true" : null,
      "data-id": view.id,
    },
    el("span", { class: "job-name", text: view.filename || view.id }),
    el("span", { class: "badge", "data-status": view.status, text: STATUS_TEXT[view.status] || view.status }),
    el(
      "span",
      { class: "job-sub" },
      [formatTime(view.duration_s), when(view.created_at)].filter(Boolean).join(" · "),
    ),
  );
  if (running) {
    const meter = el("span", { class: "job-meter", "aria-hidden": "true" }, el("span"));
    meter.firstChild.style.setProperty("--progress", String(view.progress || 0));
    link.append(meter);
  }
  return el("li", {}, link);
}

function renderJobs() {
  jobList.replaceChildren(...page.jobs.map(jobItem));
  show($("jobs-empty"), page.jobs.length === 0);
}

function upsertJob(view) {
  const index = page.jobs.findIndex((job) => job.id === view.id);
  if (index >= 0) page.jobs[index] = { ...page.jobs[index], ...view };
  else page.jobs.unshift(view);
  renderJobs();
}

async function refreshJobs() {
  clearTimeout(page.listTimer);
  const button = $("jobs-refresh");
  button.disabled = true;
  jobList.setAttribute("aria-busy", "true");
  try {
    const body = await getJSON("/v1/jobs?limit=50");
    page.jobs = body.jobs || [];
    message($("jobs-error"), "");
    renderJobs();
    if (page.jobs.some((job) => !TERMINAL.has(job.status) && job.id !== page.jobId)) {
      page.listTimer = setTimeout(refreshJobs, LIST_REFRESH_MS);
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      message($("jobs-error"), `The job list could not be loaded: ${errorText(error)}`);
    }
  } finally {
    button.disabled = false;
    jobList.removeAttribute("aria-busy");
  }
}

$("jobs-refresh").addEventListener("click", refreshJobs);

// ---------------------------------------------------------------- the selected job

function resetJobPanel() {
  page.view = null;
  page.lastStage = "queued";
  page.liveWords = null;
  page.liveCorrections = [];
  page.clipsDone = new Set();
  page.clipCount = 0;
  page.flagged = 0;
  page.flagBelow = null;
  show($("legend-flagged"), false);
  page.final = null;
  page.loadingTranscript = false;
  transcript.clear("The transcript appears here as soon as the first pass is done.");
  $("corrections").replaceChildren();
  show($("corrections-empty"));
  show($("corrections-count"), false);
  show($("stats"), false);
  show($("downloads"), false);
  show($("transcript-kind"), false);
  message($("job-error"), "");
  message($("job-live"), "");
  $("job-progress").value = 0;
}

function setAudio(id) {
  if (page.audioUrl) URL.revokeObjectURL(page.audioUrl);
  page.audioUrl = "";
  player.pause();
  if (!apiKey()) {
    player.src = jobPath(id, "/audio");
    return;
  }
  // An <audio> element cannot send the Authorization header: fetch the audio with it instead.
  player.removeAttribute("src");
  const generation = page.generation;
  request(jobPath(id, "/audio"))
    .then((response) => response.blob())
    .then((blob) => {
      if (generation !== page.generation) return;
      page.audioUrl = URL.createObjectURL(blob);
      player.src = page.audioUrl;
    })
    .catch((error) => {
      if (generation === page.generation) message($("job-error"), `The audio could not be loaded: ${errorText(error)}`);
    });
}

function selectJob(id, { force = false } = {}) {
  if (id === page.jobId && !force) return;
  page.generation += 1;
  if (page.feed) page.feed.stop();
  page.feed = null;
  page.jobId = id;
  resetJobPanel();
  show($("job-empty"), false);
  show($("job-body"));
  const known = page.jobs.find((job) => job.id === id);
  $("job-title").textContent = known ? known.filename || id : id;
  $("job-meta").textContent = "";
  setStatus(known ? known.status : "queued", known ? known.progress : 0);
  for (const link of jobList.querySelectorAll(".job-item")) {
    if (link.dataset.id === id) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
  if (page.locked) {
    player.removeAttribute("src");
    player.load();
    $("job-status").textContent = "API key needed";
    message($("job-live"), "Enter the API key above to follow this job.");
    return;
  }
  setAudio(id);

  const generation = page.generation;
  const guard = (handler) => (payload) => {
    if (generation === page.generation) handler(payload);
  };
  page.feed = new JobFeed(id, {
    state: guard(onState),
    status: guard(onStatus),
    first_pass: guard(onFirstPass),
    clip: guard(onClip),
    correction: guard(onCorrection),
    completed: guard(onCompleted),
    failed: guard(onFailed),
    error: guard((error) => {
      if (error.status === 404) message($("job-error"), "This job does not exist (any more).");
    }),
  });
  page.feed.start();
}

function setStatus(status, progress) {
  const badge = $("job-status");
  badge.dataset.status = status;
  badge.textContent = STATUS_TEXT[status] || status;
  if (STAGES.includes(status)) page.lastStage = status;
  const current = STAGES.indexOf(page.lastStage);
  for (const item of $("stages").children) {
    const index = STAGES.indexOf(item.dataset.stage);
    item.classList.toggle("done", index < current || status === "completed");
    item.classList.toggle("current", index === current && status !== "completed" && status !== "failed");
    item.classList.toggle("failed", index === current && status === "failed");
    if (index === current && status !== "completed") item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  const bar = $("job-progress");
  bar.value = status === "completed" ? 1 : Math.max(0, Math.min(1, Number(progress) || 0));
  bar.classList.toggle("failed", status === "failed");
  updateLiveLine();
}

function updateLiveLine() {
  const view = page.view;
  const status = $("job-status").dataset.status;
  let text = "";
  if (status === "completed") {
    text = page.final ? "Done. The transcript below is final." : "Done. Loading the transcript…";
  } else if (status === "failed") {
    text = "The job failed.";
  } else if (status === "queued") {
    text = "Waiting for a worker…";
  } else if (status === "transcribing") {
    text = "First pass: transcribing the whole recording…";
  } else if (status === "correcting") {
    const count = page.clipCount || (view && view.clips ? view.clips.total : 0);
    const done = Math.max(page.clipsDone.size, view && view.clips ? view.clips.done : 0);
    const flagged = page.flagged ? ` (${page.flagged} words below the threshold)` : "";
    text = count
      ? `Re-listening to the doubtful stretches${flagged}: ${done} of ${count} done`
      : `Re-listening to the doubtful stretches${flagged}…`;
  } else if (status === "merging") {
    text = "Merging the corrections into the transcript…";
  }
  // Only a change of text is announced (role=status), so the percentage stays outside it.
  if ($("job-live").textContent !== text) $("job-live").textContent = text;
  show($("job-live"), Boolean(text));
  const running = status && !TERMINAL.has(status);
  $("job-percent").textContent = running ? percent($("job-progress").value) : "";
}

function describeJob(view) {
  const parts = [];
  if (view.duration_s) parts.push(`${formatTime(view.duration_s)} of audio`);
  if (view.created_at) parts.push(`submitted ${when(view.created_at)}`);
  const options = view.options || {};
  if (options.language) parts.push(`language ${options.language}`);
  if (options.task === "translate") parts.push("translated to English");
  if (options.correction === "off") parts.push("second pass off");
  else if (typeof options.confidence_threshold === "number") parts.push(`threshold ${options.confidence_threshold.toFixed(2)}`);
  return parts.join(" · ");
}

function onState(view) {
  page.view = view;
  $("job-title").textContent = view.filename || view.id;
  $("job-meta").textContent = describeJob(view);
  if (view.clips) page.clipCount = view.clips.total;
  setStatus(view.status, view.progress);
  upsertJob(view);
}

/** The selected job's entry in the list follows what the feed says. */
function updateListed(status, progress) {
  const listed = page.jobs.find((job) => job.id === page.jobId);
  if (listed && (listed.status !== status || listed.progress !== progress)) upsertJob({ ...listed, status, progress });
}

function onStatus(update) {
  if (page.view) page.view = { ...page.view, status: update.status, progress: update.progress };
  setStatus(update.status, update.progress);
  updateListed(update.status, update.progress);
}

function onFirstPass(firstPass) {
  if (page.final) return;
  page.liveWords = (firstPass.words || []).map((word) => ({ ...word, source: "first" }));
  page.flagBelow = null;
  const options = page.view && page.view.options;
  if (options && options.correction !== "off" && typeof options.confidence_threshold === "number") {
    page.flagBelow = options.confidence_threshold;
    page.flagged = page.liveWords.filter((word) => word.probability < page.flagBelow).length;
  }
  for (const correction of page.liveCorrections) page.liveWords = applyCorrection(page.liveWords, correction);
  showLive();
  const kind = $("transcript-kind");
  kind.textContent = "first pass · refining";
  kind.className = "tag live";
  show(kind);
  updateLiveLine();
}

function showLive() {
  // Once corrections arrive, the words still marked as waiting were looked at: stop marking them.
  const waiting = page.liveCorrections.length ? null : page.flagBelow;
  transcript.show(page.liveWords, { flagBelow: waiting });
  show($("legend-flagged"), waiting !== null);
}

function onClip(clip) {
  page.clipCount = clip.count || page.clipCount;
  page.clipsDone.add(clip.index);
  updateLiveLine();
}

function onCorrection(correction) {
  if (page.final) return;
  page.liveCorrections.push(correction);
  renderCorrections(page.liveCorrections);
  if (page.liveWords) {
    page.liveWords = applyCorrection(page.liveWords, correction);
    showLive();
  }
}

async function onCompleted(done) {
  setStatus("completed", 1);
  updateListed("completed", 1);
  if (page.final || page.loadingTranscript) return;
  page.loadingTranscript = true;
  const generation = page.generation;
  const id = page.jobId;
  try {
    const url = done && done.transcript_url ? done.transcript_url : jobPath(id, "/transcript");
    const finished = await getJSON(url);
    if (generation !== page.generation) return;
    showFinal(finished, id);
  } catch (error) {
    if (generation === page.generation) message($("job-error"), `The transcript could not be loaded: ${errorText(error)}`);
  } finally {
    if (generation === page.generation) page.loadingTranscript = false;
  }
}

function onFailed(failed) {
  const progress = page.view ? page.view.progress : 0;
  setStatus("failed", progress);
  updateListed("failed", progress);
  const error = failed && failed.error;
  message($("job-error"), error ? `${error.message} (${error.code})` : "The job failed.");
}

function renderCorrections(corrections, finalWords = null) {
  const sorted = [...corrections].sort((a, b) => a.start - b.start);
  $("corrections").replaceChildren(...sorted.map((correction, index) => correctionItem(correction, index, finalWords)));
  page.shownCorrections = sorted;
  show($("corrections-empty"), sorted.length === 0);
  const counts = { accepted: 0, rejected: 0, unresolved: 0 };
  for (const correction of sorted) counts[correction.status] = (counts[correction.status] || 0) + 1;
  const tag = $("corrections-count");
  tag.textContent = `${counts.accepted} accepted · ${counts.rejected} rejected${counts.unresolved ? ` · ${counts.unresolved} unresolved` : ""}`;
  show(tag, sorted.length > 0);
}

function showFinal(finished, id) {
  page.final = finished;
  transcript.show(finished.words || []);
  show($("legend-flagged"), false);
  if (player.currentTime > 0) transcript.highlight(player.currentTime);
  const kind = $("transcript-kind");
  kind.textContent = "final";
  kind.className = "tag final";
  show(kind);
  renderCorrections(finished.corrections || [], finished.words || []);
  if (!(finished.corrections || []).length) {
    $("corrections-empty").textContent =
      page.view && page.view.options && page.view.options.correction === "off"
        ? "The second pass was off for this job."
        : "The first pass was sure enough everywhere: nothing was re-listened to.";
  }
  $("stats").replaceChildren(...statsItems(finished));
  show($("stats"));
  const downloads = $("downloads");
  downloads.replaceChildren(
    ...DOWNLOADS.map(([format, label]) =>
      el("a", { class: "download", href: jobPath(id, `/transcript?format=${format}`), "data-format": format, text: label }),
    ),
  );
  show(downloads);
  updateLiveLine();
}

// Downloads with a key: fetch with the Authorization header, then save the blob.
$("downloads").addEventListener("click", async (event) => {
  const link = event.target.closest("a.download");
  if (!link || !apiKey()) return;
  event.preventDefault();
  try {
    const response = await request(link.getAttribute("href"));
    const url = URL.createObjectURL(await response.blob());
    const suffix = { json: "json", text: "txt", srt: "srt", vtt: "vtt" }[link.dataset.format];
    const save = el("a", { href: url, download: `${page.jobId}.${suffix}` });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    message($("job-error"), `The download failed: ${errorText(error)}`);
  }
});

// ---------------------------------------------------------------- playback

function playFrom(time) {
  if (!player.src && !page.audioUrl) return;
  player.currentTime = Math.max(0, Number(time) || 0);
  transcript.highlight(player.currentTime);
  const playing = player.play();
  if (playing && typeof playing.catch === "function") {
    playing.catch(() => {
      // Autoplay rules or no audio output: the position is still set for the next play.
    });
  }
}

$("transcript").addEventListener("click", (event) => {
  const stamp = event.target.closest("button.stamp");
  if (stamp) {
    playFrom(stamp.dataset.time);
    return;
  }
  const word = transcript.wordOf(event.target);
  if (word) playFrom(word.start);
});

$("corrections").addEventListener("click", (event) => {
  const stamp = event.target.closest("button.stamp");
  if (!stamp) return;
  const item = stamp.closest(".correction");
  const correction = page.shownCorrections && page.shownCorrections[Number(item.dataset.index)];
  if (correction) flashRange(correction.start, correction.end);
  playFrom(stamp.dataset.time);
});

function flashRange(start, end) {
  const spans = [];
  transcript.words.forEach((word, index) => {
    const middle = (word.start + word.end) / 2;
    if (middle >= start - 0.05 && middle <= end + 0.05 && transcript.spans[index]) spans.push(transcript.spans[index]);
  });
  for (const span of spans) span.classList.add("spotlight");
  if (spans.length) spans[0].scrollIntoView({ block: "nearest", behavior: "smooth" });
  setTimeout(() => spans.forEach((span) => span.classList.remove("spotlight")), 1800);
}

player.addEventListener("timeupdate", () => transcript.highlight(player.currentTime));
player.addEventListener("seeked", () => transcript.highlight(player.currentTime));

// ---------------------------------------------------------------- routing

function route() {
  const match = JOB_ROUTE.exec(window.location.hash);
  if (match) selectJob(match[1]);
}

window.addEventListener("hashchange", route);

initLive();
window.addEventListener("relisten:jobs-changed", () => {
  if (!page.locked) refreshJobs();
});

// The list first: when it is refused for want of a key, the selected job waits for one too.
refreshJobs().then(route);
