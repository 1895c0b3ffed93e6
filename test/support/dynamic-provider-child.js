// The stand-in for the engine's dynamic-provider host (@pulumi/pulumi/cmd/dynamic-provider): plain
// Node, no TypeScript loader, the provider text loaded with require-from-string exactly as the
// engine does, then method calls answered over IPC with JSON-shaped values.
"use strict";
const fs = require("fs");
const requireFromString = require(
  require.resolve("require-from-string", { paths: [require.resolve("@pulumi/pulumi")] }),
);

const text = fs.readFileSync(process.argv[2], "utf8");
const provider = requireFromString(text).handler();

process.on("message", async ({ id, method, args }) => {
  try {
    if (typeof provider[method] !== "function") throw new Error(`provider has no ${method} method`);
    const result = await provider[method](...args);
    process.send({ id, result: result === undefined ? null : JSON.parse(JSON.stringify(result)) });
  } catch (err) {
    process.send({
      id,
      error: { message: String((err && err.message) || err), name: err && err.name },
    });
  }
});
process.send({ ready: true });
