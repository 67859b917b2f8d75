/**
 * The fixed list of phases a request goes through, in order, with the filter hook each one calls
 * and how each may end the request early. The session (session.ts) drives them; a filter never
 * changes their order, only what happens inside one.
 *
 * 1. **Request received.** The downstream (downstream/h1-connection.ts) has parsed and checked the
 *    head (http/validate.ts): a malformed request is refused here with 400 and never routed.
 * 2. **Route chosen.** The listener's route table (routing/) picks a route by host, path, method
 *    and headers. No route: 404. A declared body over the route's `maxBodySize`: 413.
 * 3. **Request filters** — `onRequest`, in the route's filter order (rp4's built-in policies
 *    first: rate limit; then the configuration's path edits; then the user's filters). A hook may
 *    rewrite the head, or answer (`respond`, 'responded'): the request goes no further upstream.
 *    A hook returning a promise holds the client's input until it settles.
 * 4. **Action.** The route's terminal action: `respond` and `redirect` answer locally (on to
 *    phase 6 with rp4's own head), `proxy` goes on.
 * 5. **Upstream request** — `onUpstreamRequest`, first the hop's own filter (filters/forwarded.ts:
 *    hop-by-hop headers removed, X-Forwarded-For/-Proto/-Host and Via set), then the others, so a
 *    filter sees and may change exactly what the backend will get. The head is encoded once; the upstream
 *    group picks a target, and may retry on another before any response byte arrived.
 * 6. **Response head** — `onResponse`: first the hop's filter (on the backend's head: its
 *    hop-by-hop headers removed, Via added), then the others in reverse filter order (the last
 *    filter to see the request is the first to see its response), on the backend's head or rp4's
 *    own. A hook may edit the head or replace the response (`respond`).
 * 7. **Response body** — `onResponseBody` per chunk, in the same order; a hook returns the chunk,
 *    another in its place, or null to drop it.
 * 8. **Logged** — `onLog`, once, whatever happened: answered, refused or failed (with the error).
 *
 * Any failure in any phase goes down one path (`Session.fail`): rp4's own error response when
 * nothing of the response went out yet, else the client connection is cut.
 */

/** Where a session stands; the numbered phases above, grouped by what the session must do next. */
export const enum Phase {
  /** Phases 1–4: the request is being received, routed and filtered. */
  REQUEST,
  /** Phase 5: the request is going to, or waiting for, the backend. */
  UPSTREAM,
  /** Phases 6–7: a response is being sent. */
  RESPONSE,
  /** Phase 8 reached: the request is over. */
  DONE,
}
