/* What /annotate and /compare share around their own answer: the page's state, which panel shows,
 * the outbox's "stored" reply, undo (a queued answer is taken back, one sent at least once is withdrawn
 * on the server), "check again", the start button of a viewer who only looks, and the boot sequence.
 * Needs api.js (T.request) and workbench.js (StatusBar, TaskFeed) before it; no other dependency.
 *
 *   var page = new T.AnswerPage({ root: root, els: els, bar: bar, show: show,
 *                                 undo: { url: function (id) { ... }, none: "...", done: "..." } });
 *   page.outbox = new T.Outbox(key, { onStored: page.onStored, ... });
 *   page.feed = new T.TaskFeed({ ..., onUpdate: page.render });
 *   ... page.boot();
 */
(function () {
  "use strict";

  var T = window.T2IF;

  class AnswerPage {
    // opts.root: the page's element (data-shown); opts.els: task, loading, empty, idle, undo, checkAgain;
    // opts.bar: the StatusBar; opts.show(task): put a task on screen (sets state.shown); opts.undo:
    // url(assignmentId), none, done (what undo posts to, and says)
    constructor(opts) {
      this.opts = opts;
      this.els = opts.els;
      this.bar = opts.bar;
      this.state = {
        shown: null, // the task on screen
        shownAt: null, // when all of it was visible: time on item starts here
        history: [], // tasks answered on this page, newest last (for undo)
        answered: new Set(), // assignment ids answered on this page
        busy: false, // an undo is talking to the server
        loadError: false,
      };
      this.outbox = null;
      this.feed = null;
      this.render = this.render.bind(this);
      this.undo = this.undo.bind(this);
      this.checkAgain = this.checkAgain.bind(this);
      this.begin = this.begin.bind(this);
      this.onStored = this.onStored.bind(this);
    }

    // the outbox's onStored: remembered even when the answer came from an earlier visit, because a
    // `next` reply computed before it was stored still lists its lease and must not bring it back
    onStored(item) {
      this.state.answered.add(item.id);
      this.bar.refreshStats();
      this.feed.refill();
    }

    // an answer left the screen for the outbox
    answered(task) {
      this.state.answered.add(task.assignment_id);
      this.state.history.push(task);
      if (this.state.history.length > 20) this.state.history.shift();
    }

    // the server refused an answer for good (lease lost): it can no longer be undone
    refused(id) {
      this.state.answered.add(id);
      this.state.history = this.state.history.filter(function (t) { return t.assignment_id !== id; });
    }

    loadFailed(message) {
      this.state.loadError = true;
      this.bar.say(message, "error");
    }

    render() {
      var els = this.els;
      var feed = this.feed;
      var state = this.state;
      var task = feed.current;
      if (state.loadError && feed.failures === 0) {
        state.loadError = false;
        this.bar.clear();
      }
      els.task.hidden = !task;
      els.empty.hidden = !!task || !feed.exhausted;
      els.loading.hidden = !!task || feed.exhausted || feed.stopped || feed.idle;
      els.idle.hidden = !feed.idle;
      els.undo.disabled = state.history.length === 0;
      if (!task) {
        state.shown = null;
        delete this.opts.root.dataset.shown;
      }
      else if (state.shown !== task) this.opts.show(task);
    }

    async undo() {
      var state = this.state;
      var bar = this.bar;
      var says = this.opts.undo;
      if (state.busy) return;
      var task = state.history.pop();
      if (!task) {
        bar.say(says.none, "info");
        return;
      }
      state.busy = true;
      var queued = null;
      try {
        await this.outbox.idle();
        queued = this.outbox.take(task.assignment_id);
        // sent at least once, the answer may be stored even though no reply came: undo it there too
        // (the server hands the task back to this annotator, the same way round, while the lease runs)
        if (!queued || queued.attempts > 0) {
          try {
            task = (await T.request("POST", says.url(task.assignment_id))).data;
          } catch (err) {
            if (!(queued && err.code === "nothing_to_undo")) throw err;
          }
        }
        state.answered.delete(task.assignment_id);
        this.feed.unshift(task);
        bar.lastAnswer("");
        bar.say(says.done, "info");
        bar.refreshStats();
      } catch (err) {
        if (queued) this.outbox.putBack(queued);
        if (err.sessionLost) bar.sessionLost(err);
        else bar.say(err.transient ? "Could not undo: no connection. Try again in a moment." : err.message, "error");
        if (err.transient) state.history.push(task);
      } finally {
        state.busy = false;
        this.render();
      }
    }

    checkAgain() {
      this.bar.clear();
      this.feed.exhausted = false;
      this.feed.refill({ force: true });
      this.bar.refreshStats();
    }

    begin() {
      this.feed.start();
      this.render();
    }

    // keydown, first: Enter starts a viewer's idle page. True when the page's keys must not look at it
    startKey(event) {
      if (!(this.feed.idle && !event.defaultPrevented && !T.typingIn(event.target) && event.key === "Enter")) {
        return false;
      }
      if (event.target.closest && event.target.closest("button, a, summary")) return true;
      event.preventDefault();
      this.begin();
      return true;
    }

    // keydown, once the page has let it through: Ctrl+Z undoes, other Ctrl keys belong to the browser
    ctrlKey(event, key) {
      if (!event.ctrlKey) return false;
      if (key === "z") {
        event.preventDefault();
        this.undo();
      }
      return true;
    }

    // buttons every such page has, then: answers left from an earlier visit go first, and an idle
    // viewer sees the start button, everyone else "Loading…"
    boot() {
      var outbox = this.outbox;
      this.els.undo.addEventListener("click", this.undo);
      this.els.checkAgain.addEventListener("click", this.checkAgain);
      document.getElementById("start").addEventListener("click", this.begin);
      document.getElementById("retry-now").addEventListener("click", function () { outbox.retryNow(); });
      this.bar.showPending(outbox);
      this.bar.refreshStats();
      outbox.flush();
      this.render();
      this.feed.refill();
    }
  }

  T.AnswerPage = AnswerPage;
})();
