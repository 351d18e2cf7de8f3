/* UI pieces shared by /annotate and /compare: the status bar, the prompt with highlighted words,
 * image preloading, the keyboard filter. Untrusted text only ever goes through textContent. */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var KINDS = { count: "count", color: "colour", object: "object", background: "background" };

  /* Python counts string offsets in code points, JavaScript in UTF-16 units: slice by code points
   * so that an emoji before a highlighted word does not shift the highlight. */
  function renderPrompt(el, text, highlights) {
    el.textContent = "";
    var chars = Array.from(text || "");
    var pos = 0;
    var spans = (highlights || []).slice().sort(function (a, b) { return a.start - b.start; });
    spans.forEach(function (h) {
      if (h.start < pos || h.end <= h.start || h.end > chars.length) return; // overlapping or stale
      if (h.start > pos) el.appendChild(document.createTextNode(chars.slice(pos, h.start).join("")));
      var mark = document.createElement("mark");
      var kind = Object.prototype.hasOwnProperty.call(KINDS, h.kind) ? h.kind : "other";
      mark.className = "hl hl-" + kind;
      mark.title = KINDS[kind] || "highlighted";
      mark.textContent = chars.slice(h.start, h.end).join("");
      el.appendChild(mark);
      pos = h.end;
    });
    if (pos < chars.length) el.appendChild(document.createTextNode(chars.slice(pos).join("")));
    // a long prompt gets a smaller type and a scrolling box of a few lines: the image stays in view
    var long = chars.length > LONG_PROMPT;
    el.classList.toggle("long-prompt", long);
    if (long) el.setAttribute("tabindex", "0"); // a scrolling region must be reachable by keyboard
    else el.removeAttribute("tabindex");
  }
  var LONG_PROMPT = 140;
  var POOL_MS = 20000;
  var HIDDEN_RELEASE_MS = 120000; // a tab out of view this long hands its leases back

  /* Images smaller than their box are enlarged with hard pixel edges (class "upscaled"): a smooth
   * upscale blurs exactly the details an annotator has to judge. A click (or Z on the rating page)
   * shows the image as large as the window allows; a click or Escape closes it. */
  function fit(img) {
    if (!img.naturalWidth || !img.clientWidth) return;
    var scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
    img.classList.toggle("upscaled", scale > 1);
  }

  var zoom = null;
  function zoomOpen() { return !!(zoom && zoom.open); }

  function openZoom(img) {
    if (!img.naturalWidth || img.classList.contains("is-loading")) return;
    if (!zoom) {
      zoom = document.createElement("dialog");
      zoom.className = "zoom";
      zoom.setAttribute("aria-label", "Enlarged image");
      var big = document.createElement("img");
      var hint = document.createElement("p");
      hint.textContent = "Click or press Escape to close.";
      zoom.appendChild(big);
      zoom.appendChild(hint);
      zoom.addEventListener("click", function () { zoom.close(); });
      big.addEventListener("load", function () { fit(big); });
      document.body.appendChild(zoom);
    }
    var zoomed = zoom.querySelector("img");
    zoomed.alt = img.alt + " (enlarged)";
    zoomed.src = img.currentSrc || img.src;
    zoom.showModal();
    fit(zoomed);
  }

  function zoomable(img) {
    img.classList.add("zoomable");
    img.title = "Click to enlarge";
    img.addEventListener("load", function () { fit(img); });
    img.addEventListener("click", function () { openZoom(img); });
    window.addEventListener("resize", function () { fit(img); });
  }

  // decoded images stay referenced here, so showing the next one is instant
  var preloaded = new Map();
  function preload(url) {
    if (preloaded.has(url)) return;
    var img = new Image();
    img.decoding = "async";
    img.src = url;
    preloaded.set(url, img);
    if (preloaded.size > 40) preloaded.delete(preloaded.keys().next().value);
  }
  function forget(url) { preloaded.delete(url); }

  /* Resolves when <img> shows `url` (or failed to): the moment the item counts as shown. */
  function showImage(img, url) {
    return new Promise(function (resolve) {
      function done(ok) {
        img.classList.remove("is-loading");
        img.removeEventListener("load", onLoad);
        img.removeEventListener("error", onError);
        resolve(ok);
      }
      function onLoad() { done(true); }
      function onError() { done(false); }
      img.addEventListener("load", onLoad);
      img.addEventListener("error", onError);
      // never show the previous image under the new prompt while a slow one loads
      if (img.getAttribute("src") !== url) img.classList.add("is-loading");
      img.src = url;
      if (img.complete && img.naturalWidth > 0) done(true);
    });
  }

  // keys typed into a form field belong to that field, not to the page's shortcuts
  function typingIn(target) {
    return !!(target && target.closest && target.closest("input:not([type=radio]), textarea, select, [contenteditable]"));
  }

  function normalKey(event) {
    return event.key.length === 1 ? event.key.toLowerCase() : event.key;
  }

  function localMidnightIso() {
    var now = new Date();
    return new Date(now.getFullYear(), now.getMonth(), now.getDate()).toISOString();
  }

  /* The status bar: today's count, the unsaved answers, and one message line. */
  class StatusBar {
    constructor(countField) {
      this.countField = countField; // "ratings_today" or "votes_today"
      this.today = $("today-count");
      this.pending = $("pending");
      this.retry = $("retry-now");
      this.message = $("message");
      this.messageText = $("message-text");
      this.loginLink = $("login-link");
      this.reloadLink = $("reload-link");
      this.last = $("last-answer");
      this.statsTimer = null;
      this.loginLink.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      this.reloadLink.href = location.pathname + location.search;
    }

    showPending(outbox) {
      var n = outbox.size;
      var text = "";
      this.pending.classList.toggle("is-pending", n > 0);
      if (n === 0) {
        text = "All answers saved";
      } else {
        var what = n === 1 ? "1 answer pending" : n + " answers pending";
        if (outbox.paused) text = what + " — kept on this device until you log in";
        else if (outbox.sending !== null) text = "Saving… " + what;
        else if (outbox.retryAt) text = "Saving… " + what + " (no connection, retrying)";
        else text = "Saving… " + what;
      }
      if (this.pending.textContent !== text) this.pending.textContent = text;
      this.retry.hidden = !(n > 0 && outbox.retryAt && !outbox.paused);
    }

    say(text, kind) {
      if (this.sticky) return; // a lost session outranks every later message
      this.messageText.textContent = text;
      this.message.className = "message " + (kind || "info");
      this.message.hidden = !text;
      this.loginLink.hidden = true;
      this.reloadLink.hidden = true;
    }

    clear() { this.say("", "info"); }

    sessionLost(error) {
      var csrf = error && error.code === "csrf_failed";
      this.sticky = false;
      this.say(csrf ? "This page belongs to an older log-in. Reload it; unsaved answers are kept."
        : "Your session has ended. Log in again; unsaved answers are kept on this device.", "error");
      this.loginLink.hidden = csrf;
      this.reloadLink.hidden = !csrf;
      this.sticky = true;
    }

    lastAnswer(text) {
      this.last.textContent = text || "";
      this.last.hidden = !text;
    }

    // coalesced: a burst of answers costs one stats request
    refreshStats() {
      var self = this;
      clearTimeout(this.statsTimer);
      this.statsTimer = setTimeout(function () {
        T2IF.request("GET", "/api/v1/me/stats?since=" + encodeURIComponent(localMidnightIso()))
          .then(function (res) { self.today.textContent = String(res.data[self.countField]); })
          .catch(function () { /* the count is a nicety; the next answer refreshes it */ });
        self.refreshPool();
      }, 250);
    }

    /* The pool's progress (whole-set counts): at most every POOL_MS, whatever the pace of answers. */
    refreshPool() {
      var self = this;
      if (!this.poolUrl || (this.poolAt && performance.now() - this.poolAt < POOL_MS)) return;
      this.poolAt = performance.now();
      T2IF.request("GET", this.poolUrl)
        .then(function (res) { self.showPool(res.data); })
        .catch(function () { self.poolAt = 0; /* a nicety too: the next answer asks again */ });
    }

    showPool(p) {
      var box = $("pool");
      if (!p || !p.wanted) { box.hidden = true; return; }
      var noun = p.kind === "votes" ? "vote" : "label";
      var scope = p.kind === "votes" ? (p.evaluation_id ? "This evaluation" : "All evaluations")
        : (p.prompt_set_id ? "This set" : "All sets");
      var share = p.my_share === null ? "" : " (" + Math.round(100 * p.my_share) + "%)";
      $("pool-text").textContent = scope + ": " + p.left + " " + noun + (p.left === 1 ? "" : "s") + " left of " +
        p.wanted + " · " + p.done + " done, " + p.mine + " by you" + share;
      var bar = $("pool-bar");
      bar.max = p.wanted;
      bar.value = Math.min(p.done, p.wanted);
      bar.setAttribute("aria-label", scope + ": " + p.done + " of " + p.wanted + " " + noun + "s done");
      box.hidden = false;
    }
  }


  /* What the empty page says while `next` hands out nothing, from /me/waiting: images still being
   * generated, items other annotators hold (and when they come back), or nothing left at all. */
  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function describeWait(info, noun) {
    // noun: {one: "image", many: "images", verb: "rate", done: "Every image that needs a label has one"}
    if (!info) return null;
    var lines = [];
    var title = "";
    if (info.generating > 0) {
      title = plural(info.generating, noun.one + " is", noun.many + " are") + " being generated";
    } else if (info.jobs > 0) {
      title = noun.coming + " being generated";
    }
    if (info.held_by_others > 0) {
      var held = plural(info.held_by_others, noun.one + " is", noun.many + " are") + " held by other annotators";
      if (info.next_back_at) {
        var mins = Math.max(1, Math.ceil((Date.parse(info.next_back_at) - Date.now()) / 60000));
        held += ", back within " + plural(mins, "min", "min") + " if not answered";
      }
      if (title) lines.push(held + ".");
      else title = held;
    }
    if (!title) {
      return { title: "Nothing left to " + noun.verb,
               text: noun.done + " for now. This page checks for new " + noun.many + " by itself." };
    }
    lines.push("They appear here as soon as they are ready; this page checks by itself.");
    return { title: title, text: lines.join(" ") };
  }

  /* The leased tasks this page holds, refilled from `next` before they run out. The server hands
   * back the caller's live leases first, so asking again is safe; tasks already on the page or
   * answered (isKnown) are dropped from each batch. */
  class TaskFeed {
    constructor(options) {
      this.url = options.url; // function(prefetch) -> URL
      this.isKnown = options.isKnown;
      this.imagesOf = options.imagesOf;
      this.onUpdate = options.onUpdate;
      this.onSessionLost = options.onSessionLost;
      this.onError = options.onError;
      this.lookahead = options.lookahead || 3;
      this.tasks = [];
      this.exhausted = false; // the server said 204: nothing left right now
      this.loading = false;
      this.again = false;
      this.stopped = false;
      this.failures = 0;
      this.timer = null;
      // while nothing is handed out: ask again by itself, with a growing pause (waitUrl: why)
      this.waitUrl = options.waitUrl;
      this.onWaiting = options.onWaiting || function () {};
      this.idlePolls = 0;
      this.waiting = null;
      // a viewer who does not annotate (an admin looking at /compare) leases nothing until they act
      this.idle = !!options.idle;
      this.releaseField = options.releaseField; // form field of POST /api/v1/leases/release
      var self = this;
      // a page that goes away hands back the leases it holds and has not answered, so that they do
      // not wait out the lease time (answers still in the outbox keep theirs: they are sent later)
      window.addEventListener("pagehide", function () { self.release(); });
      // a tab coming back, or a page restored by Back / Forward (bfcache), may show tasks another
      // tab answered meanwhile: the server's list of our live leases is the truth
      document.addEventListener("visibilitychange", function () {
        clearTimeout(self.hiddenTimer);
        if (document.hidden) {
          // out of view for a while: nobody is rating here, let others have the images meanwhile
          self.hiddenTimer = setTimeout(function () { self.shelve(); }, HIDDEN_RELEASE_MS);
        } else {
          self.shelved = false;
          self.resync();
        }
      });
      window.addEventListener("pageshow", function (event) {
        if (event.persisted) self.resync();
      });
    }

    start() {
      if (!this.idle) return;
      this.idle = false;
      this.refill({ force: true });
    }

    release() {
      var self = this;
      var ids = this.tasks.map(function (t) { return t.assignment_id; })
        .filter(function (id) { return !self.isKnown(id); });
      if (!ids.length || !this.releaseField || !navigator.sendBeacon) return;
      var form = new FormData();
      form.append("csrf_token", T2IF.csrfToken());
      ids.forEach(function (id) { form.append(self.releaseField, String(id)); });
      navigator.sendBeacon("/api/v1/leases/release", form);
    }

    shelve() {
      if (!document.hidden) return;
      this.release();
      this.tasks = [];
      this.shelved = true; // nothing is leased again until the tab is back in view
      this.onUpdate();
    }

    resync() {
      if (this.stopped || this.idle) return;
      if (this.loading) {
        this.resyncAfter = true;
        return;
      }
      this.refill({ force: true, replace: true, prefetch: 5 });
    }

    get current() { return this.tasks[0] || null; }

    has(id) { return this.tasks.some(function (t) { return t.assignment_id === id; }); }

    shift() {
      var t = this.tasks.shift();
      // the last one went while the server had nothing more: ask now, and learn why (wait)
      this.refill({ force: this.tasks.length === 0 && this.exhausted });
      return t;
    }

    unshift(task) {
      this.tasks = [task].concat(this.tasks.filter(function (t) { return t.assignment_id !== task.assignment_id; }));
    }

    async refill(options) {
      var force = options && options.force;
      if (this.idle || (this.shelved && document.hidden)) return;
      if (this.loading) {
        // the answer in flight may predate what just changed (an answer stored): ask again after it
        this.again = true;
        return;
      }
      if (this.stopped || (this.timer !== null && !force)) return;
      if (!force && (this.tasks.length >= this.lookahead || this.exhausted)) return;
      clearTimeout(this.timer);
      this.timer = null;
      this.loading = true;
      this.onUpdate();
      try {
        var res = await T2IF.request("GET", this.url(options && options.prefetch));
        this.failures = 0;
        this.exhausted = res.status === 204;
        var batch = res.data ? [res.data].concat(res.data.prefetched || []) : [];
        var self = this;
        if (options && options.replace) {
          // drop what the server no longer lists as ours (answered elsewhere, or the lease is gone)
          var listed = new Set(batch.map(function (t) { return t.assignment_id; }));
          this.tasks = this.tasks.filter(function (t) { return listed.has(t.assignment_id); });
        }
        batch.forEach(function (task) {
          delete task.prefetched;
          if (self.has(task.assignment_id) || self.isKnown(task.assignment_id)) return;
          self.tasks.push(task);
          self.imagesOf(task).forEach(preload);
        });
      } catch (err) {
        if (!(err instanceof T2IF.ApiError)) throw err;
        if (err.sessionLost) {
          this.stopped = true;
          this.onSessionLost(err);
        } else {
          this.failures += 1;
          var self2 = this;
          this.timer = setTimeout(function () { self2.timer = null; self2.refill({ force: true }); },
            T2IF.backoff(this.failures));
          this.onError(err);
        }
      } finally {
        this.loading = false;
      }
      if (this.exhausted && !this.stopped && this.timer === null) await this.wait();
      else if (!this.exhausted) { this.idlePolls = 0; this.waiting = null; }
      this.onUpdate();
      if (this.resyncAfter) {
        this.resyncAfter = false;
        this.again = false;
        this.resync();
      } else if (this.again) {
        this.again = false;
        this.refill();
      }
    }
  }

  TaskFeed.prototype.wait = async function () {
    /* Nothing for us now: learn why, and ask `next` again after a pause that grows from 1.5 s to
     * 30 s; sooner while images are being generated (they arrive one batch after another) and
     * right when another annotator's lease runs out. */
    this.idlePolls += 1;
    var delay = Math.min(30000, 1500 * Math.pow(1.6, this.idlePolls - 1));
    if (this.waitUrl && this.tasks.length === 0) {
      try {
        var info = (await T2IF.request("GET", this.waitUrl())).data;
        this.waiting = info;
        if (info.answerable > 0) delay = 0; // work appeared between the two calls
        else if (info.jobs > 0) delay = Math.min(delay, 4000);
        if (info.next_back_at) {
          delay = Math.min(delay, Math.max(1000, Date.parse(info.next_back_at) - Date.now() + 1000));
        }
      } catch (err) {
        if (!(err instanceof T2IF.ApiError)) throw err;
        if (err.sessionLost) {
          this.stopped = true;
          this.onSessionLost(err);
          return;
        }
      }
      this.onWaiting(this.waiting);
    }
    var self = this;
    this.timer = setTimeout(function () {
      self.timer = null;
      if (document.hidden) return; // the visibilitychange handler asks again when the tab is back
      self.refill({ force: true });
    }, delay);
  };

  window.T2IF = window.T2IF || {};
  Object.assign(window.T2IF, {
    $: $, renderPrompt: renderPrompt, preload: preload, forget: forget, showImage: showImage,
    zoomable: zoomable, openZoom: openZoom, zoomOpen: zoomOpen,
    typingIn: typingIn, normalKey: normalKey, StatusBar: StatusBar, TaskFeed: TaskFeed, describeWait: describeWait,
  });
})();
