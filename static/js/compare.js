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

  /* Undo like /annotate: a vote still queued is taken back here; one sent at least once is withdrawn on
   * the server, which hands the pair back to this rater with the same sides while the lease runs. */
  var page = new T.AnswerPage({
    root: root, els: els, bar: bar, show: show,
    undo: {
      url: function (id) { return "/api/v1/comparison-votes/" + id + "/undo"; },
      none: "There is no vote to undo.", done: "Vote undone. Compare this pair again.",
    },
  });
  var state = page.state;

  var outbox = page.outbox = new T.Outbox("votes." + root.dataset.user, {
    onStored: page.onStored,
    onRejected: function (item, err) {
      page.refused(item.id);
      page.render();
      bar.say(err.message, "error");
      feed.refill();
    },
    onSessionLost: function (err) { bar.sessionLost(err); },
    onChange: function () { bar.showPending(outbox); },
  });

  var feed = page.feed = new T.TaskFeed({
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
    onUpdate: page.render,
    onSessionLost: function (err) { bar.sessionLost(err); },
    onError: function (err) { page.loadFailed("Could not load pairs (" + err.message + ") Retrying…"); },
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
    page.answered(task);
    outbox.add(task.assignment_id, "/api/v1/comparison-votes", {
      assignment_id: task.assignment_id, alignment: alignment, fidelity: fidelity,
      duration_ms: Math.round(performance.now() - state.shownAt),
    });
    bar.clear();
    bar.lastAnswer("Last pair: text " + alignment + ", looks " + fidelity + " (U to undo)");
    feed.shift();
    page.render();
  }

  document.addEventListener("keydown", function (event) {
    if (page.startKey(event)) return;
    if (event.defaultPrevented || event.altKey || event.metaKey || T.zoomOpen()) return;
    if (T.typingIn(event.target)) return;
    var key = T.normalKey(event);
    if (page.ctrlKey(event, key)) return;
    if (key === "Enter") {
      // buttons and links keep their own Enter; elsewhere (radios included) Enter submits the vote
      if (event.target.closest && event.target.closest("button, a, summary")) return;
      event.preventDefault();
      if (!els.empty.hidden) page.checkAgain();
      else submitVote();
      return;
    }
    if (event.repeat) return;
    if (Object.prototype.hasOwnProperty.call(KEYS, key)) {
      event.preventDefault();
      choose(KEYS[key][0], KEYS[key][1]);
    } else if (key === "u") {
      event.preventDefault();
      page.undo();
    } else if (key === "r" && !els.empty.hidden) {
      event.preventDefault();
      page.checkAgain();
    }
  });

  form.addEventListener("change", updateSubmit);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitVote();
  });

  T.zoomable(els.left);
  T.zoomable(els.right);
  page.boot();
})();
