/* /compare: two sides of images (the paper's 4 against 4), two questions, Enter submits; votes go
 * through the outbox. The server already drew which side is left for this assignment and maps the
 * answer back. */
(function () {
  "use strict";

  var T = window.T2IF;
  var $ = T.$;
  var root = $("compare-app");
  var evaluationId = root.dataset.evaluationId;
  var bar = new T.StatusBar("votes_today");
  bar.poolUrl = "/api/v1/me/progress?kind=votes" +
    (evaluationId ? "&evaluation_id=" + encodeURIComponent(evaluationId) : "");
  var form = $("vote-form");
  var els = {
    task: $("task"), loading: $("loading"), empty: $("empty"), prompt: $("prompt"), left: $("left-images"),
    right: $("right-images"), submit: $("submit-vote"), undo: $("undo"), hint: $("submit-hint"), checkAgain: $("check-again"), idle: $("idle"),
    emptyTitle: $("empty-title"), emptyText: $("empty-text"),
  };
  // home row: left hand answers the first question, right hand the second; digits as an alternative
  var KEYS = {
    a: ["alignment", "left"], s: ["alignment", "tie"], d: ["alignment", "right"],
    1: ["alignment", "left"], 2: ["alignment", "tie"], 3: ["alignment", "right"],
    j: ["fidelity", "left"], k: ["fidelity", "tie"], l: ["fidelity", "right"],
    7: ["fidelity", "left"], 8: ["fidelity", "tie"], 9: ["fidelity", "right"],
  };

  // history: pairs voted on this page, newest last (for undo); busy: an undo is talking to the server
  var state = { shown: null, shownAt: null, answered: new Set(), history: [], busy: false, loadError: false };

  var outbox = new T.Outbox("votes." + root.dataset.user, {
    onStored: function (item) {
      // remembered even when the answer came from an earlier visit: a `next` reply computed before
      // it was stored still lists its lease, and must not bring the image back
      state.answered.add(item.id);
      bar.refreshStats();
      feed.refill();
    },
    onRejected: function (item, err) {
      state.answered.add(item.id);
      state.history = state.history.filter(function (t) { return t.assignment_id !== item.id; });
      render();
      bar.say(err.message, "error");
      feed.refill();
    },
    onSessionLost: function (err) { bar.sessionLost(err); },
    onChange: function () { bar.showPending(outbox); },
  });

  var feed = new T.TaskFeed({
    lookahead: 2,
    url: function () {
      var query = "prefetch=" + Math.min(5, 2 + outbox.size);
      if (evaluationId) query += "&evaluation_id=" + encodeURIComponent(evaluationId);
      return "/api/v1/comparison-tasks/next?" + query;
    },
    isKnown: function (id) { return state.answered.has(id) || outbox.has(id); },
    imagesOf: function (task) { return urlsOf(task.left).concat(urlsOf(task.right)); },
    waitUrl: function () {
      return "/api/v1/me/waiting?kind=votes" + (evaluationId ? "&evaluation_id=" + encodeURIComponent(evaluationId) : "");
    },
    onWaiting: function (info) {
      var said = T.describeWait(info, { one: "pair", many: "pairs", verb: "compare", coming: "An evaluation’s pairs are", done: "Every pair has enough votes" });
      if (!said) return;
      els.emptyTitle.textContent = said.title;
      els.emptyText.textContent = said.text;
    },
    releaseField: "comparison_assignment_id",
    idle: root.dataset.role !== "annotator",
    onUpdate: render,
    onSessionLost: function (err) { bar.sessionLost(err); },
    onError: function (err) {
      state.loadError = true;
      bar.say("Could not load pairs (" + err.message + ") Retrying…", "error");
    },
  });

  function choice(name) { return form.elements[name].value; }

  function urlsOf(side) { return side.image_urls && side.image_urls.length ? side.image_urls : [side.image_url]; }

  // one <img> per image of the side, the first keeping its id (#left-image / #right-image)
  function showSide(grid, name, urls) {
    var imgs = grid.querySelectorAll("img");
    for (var i = imgs.length; i < urls.length; i++) {
      var img = document.createElement("img");
      grid.appendChild(img);
    }
    for (var j = imgs.length - 1; j >= urls.length; j--) grid.removeChild(imgs[j]);
    grid.dataset.count = String(urls.length);
    imgs = grid.querySelectorAll("img");
    return urls.map(function (url, k) {
      imgs[k].alt = name + " image " + (k + 1) + " of " + urls.length;
      return T.showImage(imgs[k], url);
    });
  }

  function updateSubmit() {
    var ready = state.shownAt !== null && choice("alignment") && choice("fidelity");
    els.submit.disabled = !ready;
    els.hint.textContent = ready ? "Press Enter to submit." : "Answer both questions, then press Enter.";
  }

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
    form.reset();
    updateSubmit();
    T.renderPrompt(els.prompt, task.prompt, []);
    Promise.all(showSide(els.left, "Left", urlsOf(task.left)).concat(showSide(els.right, "Right", urlsOf(task.right))))
      .then(function (loaded) {
        if (state.shown !== task) return;
        state.shownAt = performance.now(); // time on item runs from the moment every image is visible
        root.dataset.shown = String(task.assignment_id); // answerable now (tests wait on it)
        updateSubmit();
        if (loaded.indexOf(false) !== -1) bar.say("An image of this pair did not load.", "error");
      });
  }

  function choose(name, value) {
    if (!state.shown) return;
    form.elements[name].value = value; // checks the matching radio button
    updateSubmit();
  }

  function submitVote() {
    var task = state.shown;
    if (!task || state.shownAt === null) return;
    var alignment = choice("alignment");
    var fidelity = choice("fidelity");
    if (!alignment || !fidelity) {
      bar.say("Answer both questions first.", "info");
      return;
    }
    state.answered.add(task.assignment_id);
    state.history.push(task);
    if (state.history.length > 20) state.history.shift();
    outbox.add(task.assignment_id, "/api/v1/comparison-votes", {
      assignment_id: task.assignment_id, alignment: alignment, fidelity: fidelity,
      duration_ms: Math.round(performance.now() - state.shownAt),
    });
    bar.clear();
    bar.lastAnswer("Last pair: text " + alignment + ", looks " + fidelity + " (U to undo)");
    feed.shift();
    render();
  }

  /* Like /annotate: a vote still queued is taken back here; one sent at least once is withdrawn on
   * the server, which hands the pair back to this rater with the same sides while the lease runs. */
  async function undo() {
    if (state.busy) return;
    var task = state.history.pop();
    if (!task) {
      bar.say("There is no vote to undo.", "info");
      return;
    }
    state.busy = true;
    var queued = null;
    try {
      await outbox.idle();
      queued = outbox.take(task.assignment_id);
      if (!queued || queued.attempts > 0) {
        try {
          task = (await T.request("POST", "/api/v1/comparison-votes/" + task.assignment_id + "/undo")).data;
        } catch (err) {
          if (!(queued && err.code === "nothing_to_undo")) throw err;
        }
      }
      state.answered.delete(task.assignment_id);
      feed.unshift(task);
      bar.lastAnswer("");
      bar.say("Vote undone. Compare this pair again.", "info");
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
    if (T.typingIn(event.target)) return;
    var key = T.normalKey(event);
    if (event.ctrlKey) {
      if (key === "z") {
        event.preventDefault();
        undo();
      }
      return;
    }
    if (key === "Enter") {
      // buttons and links keep their own Enter; elsewhere (radios included) Enter submits the vote
      if (event.target.closest && event.target.closest("button, a, summary")) return;
      event.preventDefault();
      if (!els.empty.hidden) checkAgain();
      else submitVote();
      return;
    }
    if (event.repeat) return;
    if (Object.prototype.hasOwnProperty.call(KEYS, key)) {
      event.preventDefault();
      choose(KEYS[key][0], KEYS[key][1]);
    } else if (key === "u") {
      event.preventDefault();
      undo();
    } else if (key === "r" && !els.empty.hidden) {
      event.preventDefault();
      checkAgain();
    }
  });

  form.addEventListener("change", updateSubmit);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitVote();
  });
  els.checkAgain.addEventListener("click", checkAgain);
  $("start").addEventListener("click", begin);
  els.undo.addEventListener("click", undo);
  $("retry-now").addEventListener("click", function () { outbox.retryNow(); });

  T.zoomable(els.left);
  T.zoomable(els.right);
  bar.showPending(outbox);
  bar.refreshStats();
  outbox.flush();
  render(); // an idle viewer sees the start button, everyone else "Loading…"
  feed.refill();
})();
