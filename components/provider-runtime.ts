/**
 * What a dynamic provider needs at run time. The engine serializes each provider object into the
 * state and, for every later create, update, read (refresh) and delete (destroy), loads that text
 * in a separate Node process that has no TypeScript loader. That process may belong to another
 * checkout than the one that serialized it (a laptop's `up`, then CI's `refresh`), so nothing in
 * the text may name this checkout's path: {@link loadProjectModule} finds the project when it runs.
 *
 * Where that is: the engine starts every provider plugin in the project's directory
 * (pulumi/pulumi pkg/engine/deployment.go: plugin.NewContextWithRoot with the `pwd` of
 * pkg/engine/project.go getPwdMain, the directory of Pulumi.yaml; sdk/go/common/resource/plugin/
 * provider_plugin.go spawns providers in ctx.Pwd). So it is the provider process's working
 * directory, or the nearest directory above it whose Pulumi.yaml is this project's.
 */

/** The plex-migrate project containing `start` (the provider process's cwd by default). */
export function findProjectRoot(start: string = process.cwd()): string {
  const nodePath = require("path");
  const fs = require("fs");
  let dir = nodePath.resolve(start);
  for (;;) {
    const projectFile = nodePath.join(dir, "Pulumi.yaml");
    if (
      fs.existsSync(projectFile) &&
      /^name:\s*plex-migrate\s*$/m.test(fs.readFileSync(projectFile, "utf8"))
    ) {
      return dir;
    }
    const parent = nodePath.dirname(dir);
    if (parent === dir) {
      throw new Error(
        `plex-migrate: the provider runs in ${start}, which is not inside a plex-migrate checkout ` +
          "(no Pulumi.yaml with name: plex-migrate above it). Run pulumi from the project " +
          "directory, after `npm ci`.",
      );
    }
    dir = parent;
  }
}

/**
 * `require`s `relativePath` (e.g. "lib/import/provider") of the project the provider runs in,
 * registering ts-node first when the process has no TypeScript loader.
 */
export function loadProjectModule<T>(relativePath: string): T {
  const nodePath = require("path");
  const root = findProjectRoot();
  const registered = (process as unknown as Record<symbol, unknown>)[
    Symbol.for("ts-node.register.instance")
  ];
  if (!registered) {
    require(nodePath.join(root, "node_modules", "ts-node")).register({
      transpileOnly: true,
      project: nodePath.join(root, "tsconfig.json"),
    });
  }
  return require(nodePath.join(root, relativePath)) as T;
}
