// Rendering of a transcript: words shaded by confidence, corrections, statistics.

const NO_SPACE_BEFORE = /^([,.;:!?…)\]}%]|'(s|t|re|ve|ll|d|m)\b|’(s|t|re|ve|ll|d|m)\b|n't\b)/i;
const SENTENCE_END = /[.!?…]["'”’)]?$/;

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.dataset[name.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatTime(seconds, precise = false) {
  const value = Math.max(0, Number(seconds) || 0);
  const hours = Math.floor(value / 3600);
  const minutes = Math.floor((value % 3600) / 60);
  const rest = value % 60;
  const secondsText = precise ? rest.toFixed(1).padStart(4, "0") : String(Math.floor(rest)).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secondsText}` : `${minutes}:${secondsText}`;
}

export function percent(fraction) {
  return `${Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100)}%`;
}

function seconds(value) {
  const number = Number(value) || 0;
  return `${number < 10 ? number.toFixed(1) : Math.round(number)} s`;
}

/** Paragraphs of word indices: a new one after a pause that ends a sentence, or a long pause. */
function paragraphs(words) {
  const groups = [];
  let current = [];
  for (let i = 0; i < words.length; i += 1) {
    if (current.length) {
      const previous = words[i - 1];
      const gap = words[i].start - previous.end;
      const endsSentence = SENTENCE_END.test(previous.word.trim());
      if (gap >= 2 || (endsSentence && ((gap >= 0.5 && current.length >= 25) || current.length >= 90))) {
        groups.push(current);
        current = [];
      }
    }
    current.push(i);
  }
  if (current.length) groups.push(current);
  return groups;
}

/** The words of a transcript, as spans in paragraphs; knows which word is at which time. */
export class TranscriptView {
  constructor(container) {
    this.container = container;
    this.words = [];
    this.spans = [];
    this.playing = -1;
    this.flagBelow = null;
  }

  clear(message) {
    this.words = [];
    this.spans = [];
    this.playing = -1;
    this.container.replaceChildren(el("p", { class: "hint", text: message }));
  }

  /**
   * words: [{word, start, end, probability, source?, interpolated?}], sorted by start.
   * flagBelow: mark first-pass words less sure than this as waiting to be re-listened to.
   */
  show(words, { flagBelow = null } = {}) {
    this.words = words;
    this.flagBelow = flagBelow;
    this.spans = new Array(words.length);
    this.playing = -1;
    if (!words.length) {
      this.clear("No speech was found in this recording.");
      return;
    }
    const fragment = document.createDocumentFragment();
    for (const group of paragraphs(words)) {
      const first = words[group[0]];
      const paragraph = el(
        "p",
        { class: "para" },
        el("button", {
          type: "button",
          class: "stamp",
          "data-time": String(first.start),
          "aria-label": `Play from ${formatTime(first.start)}`,
          text: formatTime(first.start),
        }),
      );
      const text = el("span", { class: "para-text" });
      group.forEach((index, position) => {
        const word = words[index];
        const label = word.word.trim();
        if (position > 0 && !NO_SPACE_BEFORE.test(label)) text.append(" ");
        const span = this.wordSpan(word, index, label);
        this.spans[index] = span;
        text.append(span);
      });
      paragraph.append(text);
      fragment.append(paragraph);
    }
    this.container.replaceChildren(fragment);
  }

  wordSpan(word, index, label) {
    const probability = Math.max(0, Math.min(1, Number(word.probability) || 0));
    const classes = ["w"];
    if (word.source === "second") classes.push("second");
    if (word.interpolated) classes.push("interpolated");
    if (word.fresh) classes.push("fresh");
    const flagged = this.flagBelow !== null && word.source !== "second" && probability < this.flagBelow;
    if (flagged) classes.push("flagged");
    const notes = [`${percent(probability)} sure`, `at ${formatTime(word.start, true)}`];
    if (word.source === "second") notes.push("re-listened");
    if (word.interpolated) notes.push("timing estimated");
    if (flagged) notes.push("to be re-listened to");
    const span = el(
      "span",
      { class: classes.join(" "), "data-index": String(index), "data-start": String(word.start), title: notes.join(" · ") },
      label,
    );
    // Set through the CSSOM (allowed by the page's Content-Security-Policy, unlike style="").
    span.style.setProperty("--doubt", (1 - probability).toFixed(3));
    return span;
  }

  /** The word at a click target, or null. */
  wordOf(target) {
    const span = target.closest(".w[data-index]");
    if (!span || !this.container.contains(span)) return null;
    return this.words[Number(span.dataset.index)] || null;
  }

  /** Marks the word being played at `time` (seconds). */
  highlight(time) {
    const index = this.indexAt(time);
    if (index === this.playing) return;
    if (this.playing >= 0 && this.spans[this.playing]) this.spans[this.playing].classList.remove("playing");
    this.playing = index;
    if (index >= 0 && this.spans[index]) this.spans[index].classList.add("playing");
  }

  indexAt(time) {
    const words = this.words;
    let low = 0;
    let high = words.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (words[middle].start <= time) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    if (found < 0 || time > words[found].end + 0.25) return -1;
    return found;
  }
}

/**
 * The live words with a merged correction applied: the words whose middle falls in the
 * corrected stretch are replaced by the final words the correction event carries (re-listened
 * ones marked, whatever the correction's status).
 */
export function applyCorrection(words, correction) {
  if (!Array.isArray(correction.words)) return words;
  const inside = (word) => {
    const middle = (word.start + word.end) / 2;
    return middle >= correction.start && middle <= correction.end;
  };
  const replacement = correction.words.map((word) => ({ ...word, fresh: word.source === "second" }));
  const kept = words.filter((word) => !inside(word)).map((word) => (word.fresh ? { ...word, fresh: false } : word));
  return [...kept, ...replacement].sort((a, b) => a.start - b.start);
}

const STATUS_TEXT = { accepted: "accepted", rejected: "rejected", unresolved: "unresolved" };
const CONTEXT_WORDS = 3;
const MAX_HUNKS = 6;
const MAX_DIFF_TOKENS = 600;

function comparable(token) {
  return token.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");
}

/**
 * The changed stretches between two texts, word by word (case and punctuation ignored):
 * [{before: [...], after: [...], left: [...context], right: [...context]}], or null when the
 * texts are too long to compare.
 */
export function wordDiff(beforeText, afterText) {
  const a = beforeText.split(/\s+/).filter(Boolean);
  const b = afterText.split(/\s+/).filter(Boolean);
  if (a.length > MAX_DIFF_TOKENS || b.length > MAX_DIFF_TOKENS) return null;
  const ka = a.map(comparable);
  const kb = b.map(comparable);
  // Longest common subsequence, filled from the end so the walk below goes forwards.
  const width = b.length + 1;
  const lcs = new Uint16Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i -= 1) {
    for (let j = b.length - 1; j >= 0; j -= 1) {
      lcs[i * width + j] =
        ka[i] === kb[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const ops = []; // [kind, token] with kind "=", "-" or "+"
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && ka[i] === kb[j]) {
      ops.push(["=", b[j]]);
      i += 1;
      j += 1;
    } else if (j < b.length && (i === a.length || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])) {
      ops.push(["+", b[j]]);
      j += 1;
    } else {
      ops.push(["-", a[i]]);
      i += 1;
    }
  }
  const hunks = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k][0] === "=") {
      k += 1;
      continue;
    }
    const hunk = { before: [], after: [], left: [], right: [] };
    let back = k - 1;
    while (back >= 0 && ops[back][0] === "=" && hunk.left.length < CONTEXT_WORDS) hunk.left.unshift(ops[back--][1]);
    hunk.leftCut = back >= 0;
    while (k < ops.length && ops[k][0] !== "=") {
      (ops[k][0] === "-" ? hunk.before : hunk.after).push(ops[k][1]);
      k += 1;
    }
    let ahead = k;
    while (ahead < ops.length && ops[ahead][0] === "=" && hunk.right.length < CONTEXT_WORDS) hunk.right.push(ops[ahead++][1]);
    hunk.rightCut = ahead < ops.length;
    hunks.push(hunk);
  }
  return hunks;
}

function side(tag, className, words) {
  return words.length ? el(tag, { class: className, text: words.join(" ") }) : el("span", { class: `${className} empty`, text: "(nothing)" });
}

/**
 * For an accepted correction and the final words: which changes made it into the transcript.
 * The merger may take only some of the second pass's edits (those over flagged words), so each
 * change is looked up, in order, among the re-listened words of its stretch. Returns one of
 * true, false or null (a pure deletion cannot be told apart) per hunk.
 */
function appliedHunks(hunks, correction, finalWords) {
  const pool = new Map();
  for (const word of finalWords) {
    const middle = (word.start + word.end) / 2;
    if (word.source !== "second" || middle < correction.start - 0.05 || middle > correction.end + 0.05) continue;
    const key = comparable(word.word);
    pool.set(key, (pool.get(key) || 0) + 1);
  }
  return hunks.map((hunk) => {
    const keys = hunk.after.map(comparable).filter(Boolean);
    if (!keys.length) return null;
    const need = new Map();
    for (const key of keys) need.set(key, (need.get(key) || 0) + 1);
    for (const [key, count] of need) if ((pool.get(key) || 0) < count) return false;
    for (const [key, count] of need) pool.set(key, pool.get(key) - count);
    return true;
  });
}

/** One "before → after" line: the old words struck out, the new ones beside them. */
function diffLine(before, after, left = [], right = [], cut = [false, false], applied = null) {
  const line = el("p", { class: applied === false ? "diff kept" : "diff" });
  if (left.length) line.append(el("span", { class: "context", text: `${cut[0] ? "…" : ""}${left.join(" ")} ` }));
  line.append(
    side("del", "before", before),
    el("span", { class: "arrow", "aria-hidden": "true", text: " → " }),
    el("span", { class: "visually-hidden", text: " changed to " }),
    side("ins", "after", after),
  );
  if (right.length) line.append(el("span", { class: "context", text: ` ${right.join(" ")}${cut[1] ? "…" : ""}` }));
  if (applied === false) {
    line.append(" ", el("span", { class: "kept-label", title: "Not merged: the first pass's words were kept", text: "not applied" }));
  }
  return line;
}

/**
 * A correction as a list item: its stretch (a play button), the status badge, each changed
 * stretch as before → after (marked "not applied" when finalWords show it was not merged),
 * the whole stretch on demand, and the merger's reason.
 */
export function correctionItem(correction, index, finalWords = null) {
  const status = STATUS_TEXT[correction.status] ? correction.status : "unresolved";
  const before = (correction.original_text || "").trim();
  const after = (correction.corrected_text || "").trim();
  const range = `${formatTime(correction.start, true)}–${formatTime(correction.end, true)}`;
  const reason = (correction.reason || "").trim();
  const item = el(
    "li",
    { class: "correction", "data-status": status, "data-index": String(index) },
    el(
      "div",
      { class: "correction-top" },
      el("button", {
        type: "button",
        class: "stamp",
        "data-time": String(correction.start),
        "aria-label": `Play the stretch ${range}`,
        text: range,
      }),
      el("span", { class: "badge", "data-status": status, text: STATUS_TEXT[status] }),
      el("span", {
        class: "hint trigger",
        title: "The lowest first-pass word confidence that triggered the re-listening",
        text: `trigger ${percent(correction.trigger_confidence)}`,
      }),
    ),
  );
  const split = (text) => text.split(/\s+/).filter(Boolean);
  const hunks = wordDiff(before, after);
  if (hunks && hunks.length) {
    const applied = status === "accepted" && finalWords ? appliedHunks(hunks, correction, finalWords) : [];
    const changes = el("div", { class: "changes" });
    hunks.slice(0, MAX_HUNKS).forEach((hunk, position) => {
      changes.append(
        diffLine(hunk.before, hunk.after, hunk.left, hunk.right, [hunk.leftCut, hunk.rightCut], applied[position] ?? null),
      );
    });
    if (hunks.length > MAX_HUNKS) changes.append(el("p", { class: "hint", text: `and ${hunks.length - MAX_HUNKS} more changes` }));
    item.append(changes);
  } else if (hunks) {
    const same = before === after ? "The second pass heard exactly the same:" : "Same words; only punctuation or case differ:";
    item.append(el("p", { class: "hint same", text: same }));
  }
  const full = diffLine(split(before), split(after));
  if (hunks && hunks.length && before.split(/\s+/).length > 12) {
    item.append(el("details", { class: "full" }, el("summary", { text: "Whole stretch" }), full));
  } else if (!hunks || !hunks.length) {
    item.append(full); // nothing shorter to show
  }
  if (reason || correction.backend) {
    item.append(
      el(
        "p",
        { class: "reason" },
        reason ? `${reason.charAt(0).toUpperCase()}${reason.slice(1)}` : "",
        correction.backend ? el("span", { class: "backend", text: correction.backend }) : null,
      ),
    );
  }
  return item;
}

/** How the language was found and which passes ran (language identification and routing). */
function languageNote(transcript) {
  const parts = [];
  const detected = transcript.language_detection;
  if (detected) parts.push(`identified ${detected.language} (${percent(detected.probability)})${detected.mixed ? ", mixed" : ""}`);
  const routing = transcript.routing;
  if (routing && routing.task === "translate") parts.push(`translated from ${routing.language}`);
  if (routing) parts.push(`${routing.first_pass}${routing.second_pass ? "" : ", no second pass"}`);
  return parts.length ? parts.join(" · ") : null;
}

/** Statistics of a finished transcript, as dt/dd pairs. */
export function statsItems(transcript) {
  const stats = transcript.stats || {};
  const duration = Number(transcript.duration_s) || 0;
  const redecoded = Number(stats.audio_redecoded_seconds) || 0;
  const speed = (Number(stats.first_pass_seconds) || 0) + (Number(stats.second_pass_seconds) || 0);
  const rows = [
    ["Duration", formatTime(duration), null],
    ["Language", transcript.language || "?", languageNote(transcript)],
    ["Words", String(transcript.words ? transcript.words.length : 0), `${stats.words_flagged ?? 0} flagged`],
    ["Re-listened", seconds(redecoded), duration ? `${percent(redecoded / duration)} of the audio` : null],
    [
      "Corrections",
      String(stats.corrections_accepted ?? 0),
      `accepted · ${stats.corrections_rejected ?? 0} rejected · ${stats.corrections_unresolved ?? 0} unresolved`,
    ],
    [
      "Processing",
      seconds(speed),
      `${seconds(stats.first_pass_seconds)} first + ${seconds(stats.second_pass_seconds)} second pass`,
    ],
  ];
  const warnings = Array.isArray(transcript.warnings) ? transcript.warnings : [];
  if (warnings.length) rows.push(["Warnings", String(warnings.length), warnings.map((w) => w.message).join(" · ")]);
  return rows.map(([term, value, note]) =>
    el("div", { class: "stat" }, el("dt", { text: term }), el("dd", {}, el("strong", { text: value }), note ? el("span", { class: "hint", text: note }) : null)),
  );
}
