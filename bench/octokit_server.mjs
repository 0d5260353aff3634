// The anchor of bench/webhook_ingress.py: @octokit/webhooks' Node middleware on a plain
// node:http server, verifying each delivery's signature and doing nothing else (nothing
// is stored). Copied next to the node_modules the bench installs, and run from there.
import http from "node:http";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";

const [port, secret] = process.argv.slice(2);
const webhooks = new Webhooks({ secret });
webhooks.onAny(() => {});
const middleware = createNodeMiddleware(webhooks, { path: "/webhooks/github" });
http.createServer(middleware).listen(Number(port), "127.0.0.1", () => {
  console.log("listening");
});
