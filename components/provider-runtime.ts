/**
 * What a dynamic provider needs at run time. The engine serializes each provider object and loads
 * the text in a separate Node process that has no TypeScript loader and resolves modules from the
 * project directory. So a provider method loads its implementation (a plain library module) with
 * {@link loadProjectModule}, by absolute path, registering ts-node first when needed.
 */
import * as path from "path";

/** Absolute path of the project, captured by value when a provider is serialized. */
export const PROJECT_ROOT = path.resolve(__dirname, "..");

/** `require`s `relativePath` (e.g. "lib/import/provider") of the project from inside a provider. */
export function loadProjectModule<T>(projectRoot: string, relativePath: string): T {
  const nodePath = require("path");
  const registered = (process as unknown as Record<symbol, unknown>)[
    Symbol.for("ts-node.register.instance")
  ];
  if (!registered) {
    require(nodePath.join(projectRoot, "node_modules", "ts-node")).register({
      transpileOnly: true,
      project: nodePath.join(projectRoot, "tsconfig.json"),
    });
  }
  return require(nodePath.join(projectRoot, relativePath)) as T;
}
