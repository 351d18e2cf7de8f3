/* JSON calls for the annotator pages, and the outbox that keeps answers until the server has them.
 *
 * An answer is keyed by its assignment id, so sending it again is safe: the server stores it once
 * and answers an identical repeat with the stored label. That lets the outbox retry whenever it is
 * unsure (network error, 5xx) without ever doubling an answer.
 */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status; // 0: no answer from the server at all
      this.code = code;
    }

    // the request may never have arrived, or the server failed: the same request may succeed later
    get transient() {
      return this.status === 0 || this.status >= 500 || this.status === 408 || this.status === 429;
    }

    // the browser session is gone or no longer matches this page: keep answers, ask for a log-in
    get sessionLost() {
      return this.status === 401 || (this.status === 403 && this.code === "csrf_failed");
    }
  }

  async function request(method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // always: some GETs change state too (`next` leases work) and need it with a session cookie
    init.headers["X-CSRF-Token"] = csrfToken();
    var response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, "network", "The server could not be reached.");
    }
    if (response.status === 204) return { status: 204, data: null };
    var data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null; // a proxy's HTML error page, or a cut-off body
    }
    if (!response.ok || data === null) {
      var e = (data && data.error) || {};
      var status = response.ok ? 502 : response.status;
      throw new ApiError(status, e.code || "http_" + status, e.message || "The server answered " + status + ".");
    }
    return { status: response.status, data: data };
  }

  // 1 s, 2 s, 4 s … capped, with jitter so that many pages do not retry in lockstep
  function backoff(failures, capMs) {
    var base = Math.min(capMs || 30000, 1000 * Math.pow(2, Math.max(0, failures - 1)));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  function openStorage() {
    try {
      var probe = "t2if.probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (err) {
      return null; // private mode or storage disabled: the outbox lives in memory only
    }
  }

  /* Answers waiting for the server, sent one at a time in the order given (so an undo that follows
   * an answer never overtakes it). Kept in localStorage too, so a reload does not lose them.
   * handlers: onStored(item, result), onRejected(item, error), onSessionLost(error), onChange(). */
  class Outbox {
    constructor(name, handlers) {
      this.key = "t2if.outbox." + name;
      this.handlers = handlers;
      this.storage = openStorage();
      this.items = this._load();
      this.sending = null; // id of the item in flight
      this.failures = 0;
      this.retryAt = null;
      this.timer = null;
      this.paused = false;
      this.waiters = [];
      var self = this;
      window.addEventListener("online", function () { self.retryNow(); });
      // a laptop waking up or a tab coming back should not wait out a long backoff
      document.addEventListener("visibilitychange", function () {
        if (!document.hidden && self.timer !== null) self.retryNow();
      });
      window.addEventListener("beforeunload", function (event) {
        // with localStorage the answers survive the reload; without it, warn before losing them
        if (!self.storage && self.items.length) event.preventDefault();
      });
    }

    get size() { return this.items.length; }
    get persistent() { return this.storage !== null; }
    has(id) { return this.items.some(function (it) { return it.id === id; }); }
    get(id) { return this.items.find(function (it) { return it.id === id; }) || null; }

    add(id, url, body) {
      if (this.has(id)) return;
      this.items.push({ id: id, url: url, body: body, attempts: 0 });
      this._changed();
      this.flush();
    }

    /* Take an item back before it reaches the server (undo). Returns the item, or null when it is
     * not queued. Call after idle(): an item in flight cannot be taken back. */
    take(id) {
      if (this.sending === id) return null;
      var item = this.get(id);
      if (!item) return null;
      this.items = this.items.filter(function (it) { return it.id !== id; });
      this._changed();
      return item;
    }

    putBack(item) {
      if (this.has(item.id)) return;
      this.items.unshift(item);
      this._changed();
      this.flush();
    }

    // resolves once nothing is in flight
    idle() {
      if (this.sending === null) return Promise.resolve();
      var self = this;
      return new Promise(function (resolve) { self.waiters.push(resolve); });
    }

    retryNow() {
      this.paused = false;
      clearTimeout(this.timer);
      this.timer = null;
      this.retryAt = null;
      this.flush();
    }

    async flush() {
      if (this.sending !== null || this.paused || this.timer !== null || !this.items.length) return;
      var item = this.items[0];
      this.sending = item.id;
      item.attempts += 1;
      this._changed();
      var outcome = null;
      try {
        var result = await request("POST", item.url, item.body);
        this._drop(item.id);
        this.failures = 0;
        outcome = function (h) { h.onStored(item, result); };
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.transient) {
          this.failures += 1;
          var delay = backoff(this.failures);
          this.retryAt = Date.now() + delay;
          var self = this;
          this.timer = setTimeout(function () { self.timer = null; self.retryAt = null; self.flush(); }, delay);
        } else if (err.sessionLost) {
          this.paused = true; // kept (also in localStorage) until the user logs in again
          outcome = function (h) { h.onSessionLost(err); };
        } else {
          // the server understood and refused (lease lost, already answered differently): final
          this._drop(item.id);
          outcome = function (h) { h.onRejected(item, err); };
        }
      } finally {
        this.sending = null;
        var waiters = this.waiters;
        this.waiters = [];
        waiters.forEach(function (resolve) { resolve(); });
      }
      this._changed();
      if (outcome) outcome(this.handlers);
      this.flush();
    }

    _drop(id) {
      this.items = this.items.filter(function (it) { return it.id !== id; });
    }

    _load() {
      if (!this.storage) return [];
      try {
        var items = JSON.parse(this.storage.getItem(this.key) || "[]");
        return Array.isArray(items) ? items.filter(function (it) { return it && it.id && it.url && it.body; }) : [];
      } catch (err) {
        return [];
      }
    }

    _changed() {
      if (this.storage) {
        try {
          if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
          else this.storage.removeItem(this.key);
        } catch (err) { /* quota: the in-memory copy still holds them */ }
      }
      if (this.handlers.onChange) this.handlers.onChange();
    }
  }

  window.T2IF = window.T2IF || {};
  window.T2IF.ApiError = ApiError;
  window.T2IF.request = request;
  window.T2IF.backoff = backoff;
  window.T2IF.csrfToken = csrfToken;
  window.T2IF.Outbox = Outbox;
})();
