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

  var page = new T.AnswerPage({
    root: root, els: els, bar: bar, show: show,
    undo: {
      url: function (id) { return "/api/v1/ratings/" + id + "/undo"; },
      none: "There is no answer to undo.", done: "Answer undone. Rate this image again.",
    },
  });
  var state = page.state;

  var outbox = page.outbox = new T.Outbox("ratings." + root.dataset.user, {
    onStored: page.onStored,
    onRejected: function (item, err) {
      if (err.code === "already_answered") {
        // another tab (or this page before Back / Forward) answered first: that answer stands
        state.answered.add(item.id);
        showStored(item.id);
        feed.refill();
        return;
      }
      // lease lost: the server's own words, and the page has moved on already
      page.refused(item.id);
      bar.say(err.message, "error");
      page.render();
      feed.refill();
    },
    onSessionLost: function (err) { bar.sessionLost(err); },
    onChange: function () { bar.showPending(outbox); },
  });

  var feed = page.feed = new T.TaskFeed({
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
    onUpdate: page.render,
    onSessionLost: function (err) { bar.sessionLost(err); },
    onError: function (err) { page.loadFailed("Could not load images (" + err.message + ") Retrying…"); },
  });

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
    page.answered(task);
    outbox.add(task.assignment_id, "/api/v1/ratings", body);
    bar.clear();
    bar.lastAnswer("Last: " + LABELS[label] + " (U to undo)");
    feed.shift();
    page.render();
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

  document.addEventListener("keydown", function (event) {
    if (page.startKey(event)) return;
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
    if (page.ctrlKey(event, key)) return;
    if (event.repeat) return; // a held key must not rate a run of images
    if (Object.prototype.hasOwnProperty.call(KEYS, key)) {
      event.preventDefault();
      answer(KEYS[key]);
    } else if (key === "u") {
      event.preventDefault();
      page.undo();
    } else if (key === "h") {
      event.preventDefault();
      els.guidelines.open = !els.guidelines.open;
    } else if (key === "z" && state.shown) {
      event.preventDefault();
      T.openZoom(els.image);
    } else if (key === "r" && !els.empty.hidden) {
      event.preventDefault();
      page.checkAgain();
    }
  });

  T.zoomable(els.image);
  document.querySelectorAll(".answer").forEach(function (button) {
    button.addEventListener("click", function () { answer(button.dataset.label); });
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return; // restored by Back / Forward: send what waits, recount
    outbox.flush();
    bar.refreshStats();
  });

  page.boot();
})();
