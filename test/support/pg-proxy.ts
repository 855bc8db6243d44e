// A TCP proxy in front of PostgreSQL that can cut a connection right after the server has executed a COMMIT
// and before its answer ("CommandComplete COMMIT") reaches the client: the transaction is committed, the
// client only sees its connection drop. This is what a network failure, a pooler restart or a killed
// connection at the wrong instant looks like to the application.
import net from "node:net";

export interface PgProxy {
  port: number;
  /** Cut the next connection whose server answers a COMMIT (`count` times). */
  armCommitCut(count?: number): void;
  cuts(): number;
  /** Cut every open connection now. */
  cutAll(): void;
  close(): Promise<void>;
}

export async function startPgProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<PgProxy> {
  let armed = 0;
  let cut = 0;
  const pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const pair = { a: client, b: upstream };
    pairs.add(pair);
    const kill = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", kill);
    upstream.on("error", kill);
    client.on("close", kill);
    upstream.on("close", kill);
    client.pipe(upstream);
    // server -> client: parse messages (type byte + int32 length) to find CommandComplete "COMMIT"
    let buf = Buffer.alloc(0);
    upstream.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let off = 0;
      const out: Buffer[] = [];
      while (buf.length - off >= 5) {
        const len = buf.readInt32BE(off + 1);
        if (buf.length - off < 1 + len) break;
        const msg = buf.subarray(off, off + 1 + len);
        if (armed > 0 && msg[0] === 0x43 /* C */ && msg.subarray(5, 5 + 6).toString() === "COMMIT") {
          armed--;
          cut++;
          if (out.length) client.write(Buffer.concat(out));
          kill();
          return;
        }
        out.push(msg);
        off += 1 + len;
      }
      buf = buf.subarray(off);
      if (out.length) client.write(Buffer.concat(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    armCommitCut(count = 1) {
      armed += count;
    },
    cuts: () => cut,
    cutAll() {
      for (const p of pairs) {
        p.a.destroy();
        p.b.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.a.destroy();
          p.b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
