/**
 * rp4's own responses carry a Date (RFC 9110 §6.6.1), which changes from run to run: specs that
 * compare a response's exact bytes compare them without it, once it is checked here.
 */

/** IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/

/** A Date field line inside a head (never the first line: the status line is). */
const DATE_LINE = /\r\nDate: ([^\r\n]*)(?=\r\n)/g

/** `value` is an IMF-fixdate within `slackMs` of now; throws saying what is wrong otherwise. */
export function checkDate (value: string, slackMs = 60_000): void {
  if (!IMF_FIXDATE.test(value)) throw new Error(`Date ${JSON.stringify(value)} is not an IMF-fixdate`)
  const off = Math.abs(Date.parse(value) - Date.now())
  if (off > slackMs) throw new Error(`Date ${JSON.stringify(value)} is ${Math.round(off / 1000)} s away from now`)
}

/**
 * `text` (one response or several, as the client read them) with each head's Date line taken out,
 * after checking that each is a current IMF-fixdate. At most one per head: a second one throws.
 */
export function undated (text: string): string {
  let out = ''
  let from = 0
  for (;;) {
    const start = text.indexOf('HTTP/1.', from)
    if (start === -1) break
    const end = text.indexOf('\r\n\r\n', start)
    if (end === -1) break
    // the head with its last line's CRLF, so that a Date last among the fields is found too
    const head = text.slice(start, end + 2)
    let dates = 0
    out += text.slice(from, start) + head.replace(DATE_LINE, (_line, value: string) => {
      checkDate(value)
      if (++dates > 1) throw new Error(`two Date fields in ${JSON.stringify(head)}`)
      return ''
    })
    from = end + 2
    // a body of known length is passed over whole (the next response may follow it on the same line)
    const length = /\r\nContent-Length: *(\d+)\r\n/i.exec(head)
    if (length !== null && !/^HTTP\/1\.[01] (1\d\d|204|304)/.test(head)) {
      const next = Math.min(text.length, end + 4 + Number(length[1]))
      out += text.slice(from, next)
      from = next
    }
  }
  return out + text.slice(from)
}
