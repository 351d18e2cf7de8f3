/* /annotate: one image after another, good / bad / skip by keyboard, undo, nothing ever lost.
 *
 * An answer leaves the screen at once and goes to the outbox (api.js), which sends it in the
 * background and retries; the next image was preloaded, so the switch does not wait for the server.
 */
(function () {
  "use strict";

  var T = window.T2IF;
  var $ = T.$;
  var root = $("rate-app");
  var promptSetId = root.dataset.promptSetId;
  var bar = new T.StatusBar("ratings_today");
  bar.poolUrl = "/api/v1/me/progress?kind=ratings" +
    (root.dataset.promptSetId ? "&prompt_set_id=" + encodeURIComponent(root.dataset.promptSetId) : "");
  var els = {
    task: $("task"), loading: $("loading"), empty: $("empty"), prompt: $("prompt"), image: $("task-image"),
    reason: $("skip-reason"), undo: $("undo"), guidelines: $("guidelines"), checkAgain: $("check-again"), idle: $("idle"),
    emptyTitle: $("empty-title"), emptyText: $("empty-text"),
  };
  var LABELS = { good: "Good", bad: "Bad", skip: "Skip" };
  var KEYS = { g: "good", 1: "good", ArrowRight: "good", b: "bad", 2: "bad", ArrowLeft: "bad", s: "skip", 0: "skip" };

  var state = {
    shown: null, // the task on screen
    shownAt: null, // when its image appeared: time on item starts here
    history: [], // tasks answered on this page, newest last (for undo)
    answered: new Set(), // assignment ids answered on this page
    busy: false, // an undo is talking to the server
    loadError: false,
  };

  var outbox = new T.Outbox("ratings." + root.dataset.user, {
    onStored: function (item) {
      // remembered even when the answer came from an earlier visit: a `next` reply computed before
      // it was stored still lists its lease, and must not bring the image back
      state.answered.add(item.id);
      bar.refreshStats();
      feed.refill();
    },
    onRejected: function (item, err) {
      if (err.code === "already_answered") {
        // another tab (or this page before Back / Forward) answered first: that answer stands
        state.answered.add(item.id);
        showStored(item.id);
        feed.refill();
        return;
      }
      // lease lost: the server's own words, and the page has moved on already
      state.history = state.history.filter(function (t) { return t.assignment_id !== item.id; });
      state.answered.add(item.id);
      bar.say(err.message, "error");
      render();
      feed.refill();
    },
    onSessionLost: function (err) { bar.sessionLost(err); },
    onChange: function () { bar.showPending(outbox); },
  });

  var feed = new T.TaskFeed({
    url: function () {
      // our own leases come back first; ask for a few more while answers still hold theirs
      var query = "prefetch=" + Math.min(5, 3 + outbox.size);
      if (promptSetId) query += "&prompt_set_id=" + encodeURIComponent(promptSetId);
      return "/api/v1/rating-tasks/next?" + query;
    },
    isKnown: function (id) { return state.answered.has(id) || outbox.has(id); },
    imagesOf: function (task) { return [task.image_url]; },
    waitUrl: function () {
      return "/api/v1/me/waiting?kind=ratings" + (promptSetId ? "&prompt_set_id=" + encodeURIComponent(promptSetId) : "");
    },
    onWaiting: function (info) {
      var said = T.describeWait(info, { one: "image", many: "images", verb: "rate", coming: "Images are", done: "Every image that needs a label has one" });
      if (!said) return;
      els.emptyTitle.textContent = said.title;
      els.emptyText.textContent = said.text;
    },
    releaseField: "rating_assignment_id",
    idle: root.dataset.role !== "annotator",
    onUpdate: render,
    onSessionLost: function (err) { bar.sessionLost(err); },
    onError: function (err) {
      state.loadError = true;
      bar.say("Could not load images (" + err.message + ") Retrying…", "error");
    },
  });

  function render() {
    var task = feed.current;
    if (state.loadError && feed.failures === 0) {
      state.loadError = false;
      bar.clear();
    }
    els.task.hidden = !task;
    els.empty.hidden = !!task || !feed.exhausted;
    els.loading.hidden = !!task || feed.exhausted || feed.stopped || feed.idle;
    els.idle.hidden = !feed.idle;
    els.undo.disabled = state.history.length === 0;
    if (!task) {
      state.shown = null;
      delete root.dataset.shown;
    }
    else if (state.shown !== task) show(task);
  }

  function show(task) {
    state.shown = task;
    state.shownAt = null;
    delete root.dataset.shown;
    T.renderPrompt(els.prompt, task.prompt, task.highlights);
    T.showImage(els.image, task.image_url).then(function (ok) {
      if (state.shown !== task) return;
      state.shownAt = performance.now();
      root.dataset.shown = String(task.assignment_id); // answerable now (tests wait on it)
      if (!ok) bar.say("This image did not load. Skip it with the reason “Image broken”.", "error");
    });
  }

  function answer(label) {
    var task = state.shown;
    if (!task || state.shownAt === null || state.busy) return;
    var body = {
      assignment_id: task.assignment_id, label: label,
      duration_ms: Math.round(performance.now() - state.shownAt),
      skip_reason: label === "skip" && els.reason.value ? els.reason.value : null,
    };
    els.reason.value = "";
    state.answered.add(task.assignment_id);
    state.history.push(task);
    if (state.history.length > 20) state.history.shift();
    outbox.add(task.assignment_id, "/api/v1/ratings", body);
    bar.clear();
    bar.lastAnswer("Last: " + LABELS[label] + " (U to undo)");
    feed.shift();
    render();
  }

  async function showStored(id) {
    var stored;
    try {
      stored = (await T.request("GET", "/api/v1/ratings/" + id)).data;
    } catch (err) {
      bar.say("This image was already answered elsewhere; that answer stands.", "info");
      return;
    }
    var label = LABELS[stored.label] || stored.label;
    bar.say("This image was already answered “" + label + "” (in another tab or earlier); that answer stands.",
      "info");
    var last = state.history[state.history.length - 1];
    if (last && last.assignment_id === id) bar.lastAnswer("Last: " + label + " (U to undo)");
    bar.refreshStats();
  }

  async function undo() {
    if (state.busy) return;
    var task = state.history.pop();
    if (!task) {
      bar.say("There is no answer to undo.", "info");
      return;
    }
    state.busy = true;
    var queued = null;
    try {
      await outbox.idle();
      queued = outbox.take(task.assignment_id);
      // sent at least once, the answer may be stored even though no reply came: undo it there too
      if (!queued || queued.attempts > 0) {
        try {
          task = (await T.request("POST", "/api/v1/ratings/" + task.assignment_id + "/undo")).data;
        } catch (err) {
          if (!(queued && err.code === "nothing_to_undo")) throw err;
        }
      }
      state.answered.delete(task.assignment_id);
      feed.unshift(task);
      bar.lastAnswer("");
      bar.say("Answer undone. Rate this image again.", "info");
      bar.refreshStats();
    } catch (err) {
      if (queued) outbox.putBack(queued);
      if (err.sessionLost) bar.sessionLost(err);
      else bar.say(err.transient ? "Could not undo: no connection. Try again in a moment." : err.message, "error");
      if (err.transient) state.history.push(task);
    } finally {
      state.busy = false;
      render();
    }
  }

  function checkAgain() {
    bar.clear();
    feed.exhausted = false;
    feed.refill({ force: true });
    bar.refreshStats();
  }

  function begin() {
    feed.start();
    render();
  }

  document.addEventListener("keydown", function (event) {
    if (feed.idle && !event.defaultPrevented && !T.typingIn(event.target) && event.key === "Enter") {
      if (event.target.closest && event.target.closest("button, a, summary")) return;
      event.preventDefault();
      begin();
      return;
    }
    if (event.defaultPrevented || event.altKey || event.metaKey || T.zoomOpen()) return;
    if (event.target === els.reason) {
      // in the reason list Enter skips with the chosen reason and hands the keys back to the page
      if (event.key === "Enter") {
        event.preventDefault();
        answer("skip");
        els.reason.blur();
      } else if (event.key === "Escape") {
        els.reason.blur();
      }
      return;
    }
    if (T.typingIn(event.target)) return;
    var key = T.normalKey(event);
    if (event.ctrlKey) {
      if (key === "z") {
        event.preventDefault();
        undo();
      }
      return;
    }
    if (event.repeat) return; // a held key must not rate a run of images
    if (Object.prototype.hasOwnProperty.call(KEYS, key)) {
      event.preventDefault();
      answer(KEYS[key]);
    } else if (key === "u") {
      event.preventDefault();
      undo();
    } else if (key === "h") {
      event.preventDefault();
      els.guidelines.open = !els.guidelines.open;
    } else if (key === "z" && state.shown) {
      event.preventDefault();
      T.openZoom(els.image);
    } else if (key === "r" && !els.empty.hidden) {
      event.preventDefault();
      checkAgain();
    }
  });

  T.zoomable(els.image);
  document.querySelectorAll(".answer").forEach(function (button) {
    button.addEventListener("click", function () { answer(button.dataset.label); });
  });
  els.undo.addEventListener("click", undo);
  els.checkAgain.addEventListener("click", checkAgain);
  $("start").addEventListener("click", begin);
  $("retry-now").addEventListener("click", function () { outbox.retryNow(); });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return; // restored by Back / Forward: send what waits, recount
    outbox.flush();
    bar.refreshStats();
  });

  bar.showPending(outbox);
  bar.refreshStats();
  outbox.flush(); // answers left from an earlier visit go first
  render(); // an idle viewer sees the start button, everyone else "Loading…"
  feed.refill();
})();
