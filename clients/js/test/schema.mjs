// The one JSON Schema of the protocol (docs/protocol.schema.json), applied to real frames: a
// WebSocket for the tests that checks every frame the SDK sends and every frame the server
// answers, so each SDK test is a conformance test of both sides as well.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import WebSocket from "ws";
import { schemaPath } from "../scripts/gen-types.mjs";

export const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(schema);

const validators = new Map();
function validator(section, type) {
  const key = `${section}/${type}`;
  if (!validators.has(key)) {
    const exists = Object.hasOwn(schema[section], type);
    validators.set(key, exists ? ajv.getSchema(`${schema.$id}#/${section}/${type}`) : null);
  }
  return validators.get(key);
}

/** What was seen, for the coverage check, and every disagreement with the schema. */
export const seen = { client: new Set(), ack: new Set(), server: new Set() };
export const violations = [];

function check(section, type, data, frame) {
  const validate = validator(section, type);
  if (!validate) {
    violations.push(`${section} type ${JSON.stringify(type)} is not in the schema: ${JSON.stringify(frame)}`);
    return;
  }
  seen[section].add(type);
  if (!validate(data === undefined ? {} : data)) {
    violations.push(`${section} ${type}: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(frame)}`);
  }
}

/** A request frame the client sends. */
export function checkRequest(frame, opTypes) {
  check("client", frame.type, frame.data ?? null, frame);
  if (frame.op_id !== undefined) opTypes.set(frame.op_id, frame.type);
}

/** A frame the server sends; `opTypes` maps the connection's op_ids to their request types. */
export function checkServerFrame(frame, opTypes) {
  check("server", frame.type, frame.data, frame);
  if (frame.op_id === undefined) return;
  const requestType = opTypes.get(frame.op_id);
  if (requestType === undefined) {
    violations.push(`answer to an unknown op_id: ${JSON.stringify(frame)}`);
  } else if (frame.type === "ack" || frame.type === "presence.pong") {
    check("ack", requestType, frame.data, frame);
  }
}

/** The ws package's WebSocket, checking each frame both ways against the schema. */
export class CheckedWebSocket extends WebSocket {
  constructor(url) {
    super(url);
    const opTypes = new Map();
    this.opTypes = opTypes;
    this.addEventListener("message", (event) => {
      try {
        checkServerFrame(JSON.parse(String(event.data)), opTypes);
      } catch (err) {
        violations.push(`a server frame that is not JSON: ${String(event.data).slice(0, 200)} (${err})`);
      }
    });
  }

  send(data, ...rest) {
    checkRequest(JSON.parse(data), this.opTypes);
    return super.send(data, ...rest);
  }
}
