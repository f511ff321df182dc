/** A request context for middleware unit tests, whose writer records what reached the client. */
import { HeaderList } from "../core/headers.ts";
import { EMPTY_BODY, type ResponseWriter } from "../core/body.ts";
import { RequestContext } from "../core/context.ts";

/** A context whose writer records what reached the client. */
export function testContext(): {
  ctx: RequestContext;
  sent: { status: number; headers: HeaderList; body: string };
} {
  const sent = { status: 0, headers: new HeaderList(), body: "" };
  let headSent = false;
  const res: ResponseWriter = {
    get headSent() {
      return headSent;
    },
    writeHead(status, headers) {
      headSent = true;
      sent.status = status;
      sent.headers = headers;
    },
    write(chunk) {
      sent.body += new TextDecoder().decode(chunk);
      return Promise.resolve();
    },
    end() {
      return Promise.resolve();
    },
    abort() {},
  };
  const ctx = new RequestContext(
    "GET",
    "/",
    "example",
    "http",
    "HTTP/1.1",
    new HeaderList(),
    EMPTY_BODY,
    res,
    "127.0.0.1",
    1,
    "t",
  );
  return { ctx, sent };
}
