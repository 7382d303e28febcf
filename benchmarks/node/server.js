// node's smtp-server as a benchmark server for benchmarks/compare.py.
//
//   node benchmarks/node/server.js CERTFILE KEYFILE
//
// Listens on 127.0.0.1 with two servers, like smtp_recv: a plaintext one
// (MX-like, no AUTH, any recipient accepted) and an implicit-TLS one that
// requires AUTH PLAIN and accepts any credentials.  Every message is read to
// its end and discarded.  Prints {"plain": [host, port], "tls": [host, port]}
// on one line once both listen; exits on SIGTERM or SIGINT.
"use strict";
const fs = require("fs");
const { SMTPServer } = require("smtp-server");

const [certfile, keyfile] = process.argv.slice(2);
const common = {
  name: "bench.local",
  logger: false,
  disableReverseLookup: true,
  size: 64 * 1024 * 1024,
  maxClients: 100000,
  onData(stream, session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => callback(null, "Queued"));
  },
};
const plain = new SMTPServer({
  ...common,
  authOptional: true,
  disabledCommands: ["AUTH", "STARTTLS"],
});
const tls = new SMTPServer({
  ...common,
  secure: true,
  cert: fs.readFileSync(certfile),
  key: fs.readFileSync(keyfile),
  authMethods: ["PLAIN"],
  onAuth(auth, session, callback) {
    callback(null, { user: auth.username });
  },
});
for (const server of [plain, tls]) {
  server.on("error", (err) => console.error("server error:", err.message));
}
plain.listen(0, "127.0.0.1", () => {
  tls.listen(0, "127.0.0.1", () => {
    const p = plain.server.address();
    const t = tls.server.address();
    console.log(JSON.stringify({ plain: [p.address, p.port], tls: [t.address, t.port] }));
  });
});
const stop = () => process.exit(0);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
