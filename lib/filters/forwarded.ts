/**
 * What a proxy owes both hops, as a filter: on the upstream request, the hop-by-hop headers
 * removed, X-Forwarded-For/-Proto/-Host and Via set (http/forwarding.ts has the rules), and the
 * verified client certificate's identity headers where the listener asks for them
 * (session/identity.ts); on the backend's response head, its hop-by-hop headers removed and Via
 * added. Every route has it, and it stands for the hop itself: it runs first on both hooks (see
 * `compileFilters`), so every other filter sees exactly what the backend will get, and the
 * backend's response as the client may get it. rp4's own answers (respond, redirect, error pages)
 * have no hop to clean up.
 */
import { forwardRequest, forwardResponse } from '../http/forwarding.js'
import type { Filter } from '../session/filter.js'
import type { Session } from '../session/session.js'

export function forwardedFilter (via: string): Filter {
  return {
    name: 'forwarded',
    onUpstreamRequest (session, head): void {
      const s = session as Session
      forwardRequest(head, s.forwardContext(), s.facts.needsHost)
      s.forwardIdentity(head)
    },
    onResponse (session, head): void {
      if ((session as Session).responseFromBackend) forwardResponse(head, via)
    },
  }
}
