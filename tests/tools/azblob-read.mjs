// azblob-read.mjs - reads blobs back with Microsoft's own Azure Storage SDK
// (@azure/storage-blob), not with stampd's code, so the archive is checked
// by an independent client.  Prints one JSON object per blob under PREFIX:
//   {"name", "size", "sha256", "base64"}
// usage: node azblob-read.mjs CONNECTION_STRING CONTAINER PREFIX
import { createHash } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(process.env.AZSDK_DIR + "/");
const { BlobServiceClient } = require("@azure/storage-blob");

const [conn, container, prefix] = process.argv.slice(2);
const svc = BlobServiceClient.fromConnectionString(conn);
const cc = svc.getContainerClient(container);
const out = [];
for await (const b of cc.listBlobsFlat({ prefix })) {
  const buf = await cc.getBlobClient(b.name).downloadToBuffer();
  out.push({
    name: b.name,
    size: buf.length,
    listedSize: b.properties.contentLength,
    sha256: createHash("sha256").update(buf).digest("hex"),
    base64: buf.toString("base64"),
  });
}
process.stdout.write(JSON.stringify(out) + "\n");
