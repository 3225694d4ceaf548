// A Postman collection from the API's OpenAPI document, with the variables a
// Postman user sets once: `baseUrl` and `bearerToken` (every private request
// uses it). Usage: node scripts/postman.mjs [document URL or file] [output file]
import { readFile, writeFile } from "node:fs/promises";
import Converter from "openapi-to-postmanv2";

const source = process.argv[2] ?? "http://localhost:5000/api/openapi.json";
const output = process.argv[3] ?? "shop.postman_collection.json";
const text = /^https?:/.test(source)
  ? await (await fetch(source)).text()
  : await readFile(source, "utf8");
const spec = JSON.parse(text);
const baseUrl = process.env.SHOP_URL ?? new URL(source.startsWith("http") ? source : "http://localhost:5000").origin;
spec.servers = [{ url: baseUrl }];

const collection = await new Promise((resolve, reject) => {
  Converter.convert(
    { type: "json", data: spec },
    { folderStrategy: "Tags", requestParametersResolution: "Example", exampleParametersResolution: "Example" },
    (error, result) => {
      if (error) return reject(error);
      if (!result.result) return reject(new Error(result.reason));
      resolve(result.output[0].data);
    },
  );
});

const variables = (collection.variable ?? []).filter((v) => !["baseUrl", "bearerToken"].includes(v.key));
collection.variable = [
  { key: "baseUrl", value: baseUrl, type: "string" },
  { key: "bearerToken", value: "", type: "string", description: "An access_token from login or signup" },
  ...variables,
];
collection.auth = { type: "bearer", bearer: [{ key: "token", value: "{{bearerToken}}", type: "string" }] };
await writeFile(output, JSON.stringify(collection, null, 2) + "\n");

let requests = 0;
const count = (items) => items.forEach((i) => (i.item ? count(i.item) : requests++));
count(collection.item);
console.log(`${output}: ${requests} requests`);
