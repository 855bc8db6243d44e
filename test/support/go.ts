// The start line of the attack processes (http-flood.ts, ws-flood.ts) and the test's side of it: the process
// is started ahead of its phase, says "ready" once loaded, and attacks when told "go", so the victim's
// figures measure the server under attack, not the attacker's own start (tsx compiling it on the same cores).
import { spawn } from "node:child_process";

/** In the attack process: announce readiness, then wait for the test's word. */
export async function readyThenGo(): Promise<void> {
  process.stdout.write("ready\n");
  await new Promise<void>((resolve) => process.stdin.once("data", () => resolve()));
}

/** In the test: start `command args`, resolve once it is ready; `go()` starts the attack and resolves with its last output line. */
export function startAttacker(command: string, args: string[]): Promise<{ go(): Promise<string> }> {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] });
  let output = "";
  const exited = new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => (code === 0 ? resolve(output.trim().split("\n").at(-1)!) : reject(new Error(`${args[0]} exited with ${code}: ${output}`))));
  });
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      const before = output;
      output += chunk;
      if (!before.includes("ready\n") && output.includes("ready\n")) {
        resolve({
          go() {
            child.stdin.end("go\n");
            return exited;
          },
        });
      }
    });
    exited.catch(reject);
  });
}
