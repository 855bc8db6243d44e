// Yoga plugins that bound what one operation may ask for, and what kind of request may carry it:
// - graphql-armor: tokens (the parser stops counting at the limit, which also bounds its recursion), depth,
//   aliases, directives and cost. They hook Yoga's envelop parse/validate, so they apply to WebSocket
//   operations too (src/server.ts parses and validates those through `yoga.getEnveloped`).
// - CSRF: Yoga's useCSRFPrevention, and only JSON (or application/graphql) POST bodies.
// - A malformed JSON body is a 400 that does not repeat the body.
// - A body without a declared length (chunked) is counted as it is read: 413 past the limit.
// - CORS from an allow-list, never with credentials.
import { EnvelopArmorPlugin } from "@escape.tech/graphql-armor";
import type { GraphQLArmorRejectCallback } from "@escape.tech/graphql-armor-types";
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { GraphQLError } from "graphql";
import type { CORSOptions, Plugin } from "graphql-yoga";
import type { Limits } from "../limits.ts";

/** The header a GET (or any request with a CORS-safelisted content type) must carry. */
export const CSRF_HEADER = "x-graphql-yoga-csrf";

const LIMIT_EXCEEDED = "LIMIT_EXCEEDED";

function limitError(message: string): GraphQLError {
  return new GraphQLError(message.replace(/^Syntax Error: /, ""), { extensions: { code: LIMIT_EXCEEDED, http: { status: 400 } } });
}

/** Validation rules report into the validation context (one error per rule); the token limit must throw. */
const reportToValidation: GraphQLArmorRejectCallback = (ctx, error) => ctx?.reportError(limitError(error.message));
const throwFromParser: GraphQLArmorRejectCallback = (_ctx, error) => {
  throw limitError(error.message);
};

export function operationLimitPlugins(limits: Limits): Plugin[] {
  const validation = { propagateOnRejection: false, onReject: [reportToValidation] };
  return [
    EnvelopArmorPlugin({
      maxTokens: { n: limits.maxTokens, propagateOnRejection: false, onReject: [throwFromParser] },
      maxDepth: { n: limits.maxDepth, ...validation },
      maxAliases: { n: limits.maxAliases, ...validation },
      maxDirectives: { n: limits.maxDirectives, ...validation },
      costLimit: { maxCost: limits.maxCost, ...validation },
      // "Did you mean …" suggestions stay: the schema is public (introspection is on).
      blockFieldSuggestion: { enabled: false },
    }) as Plugin,
  ];
}

const ACCEPTED_BODY_TYPES = ["application/json", "application/graphql+json", "application/graphql"];

/**
 * CSRF prevention and JSON-only POST bodies; a malformed JSON body answered without echoing it; a chunked body
 * counted against `maxBodyBytes`.
 */
export function requestShapePlugins(maxBodyBytes: number): Plugin[] {
  return [
    useCSRFPrevention({ requestHeaders: [CSRF_HEADER] }),
    {
      onRequestParse({ request, requestParser, setRequestParser }) {
        if (request.method !== "POST") return;
        const type = (request.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
        if (!ACCEPTED_BODY_TYPES.includes(type)) {
          throw new GraphQLError("POST bodies must be JSON: send content-type: application/json.", {
            extensions: { code: "BAD_REQUEST", http: { status: 415 } },
          });
        }
        if (!requestParser) return;
        setRequestParser(async (req) => {
          try {
            return await requestParser(req);
          } catch (err) {
            // Yoga's JSON parser copies the parser's message (which quotes the body) into the error.
            if (err instanceof GraphQLError && err.extensions?.originalError) {
              throw new GraphQLError("POST body is not valid JSON.", { extensions: { code: "BAD_REQUEST", http: { status: 400 } } });
            }
            throw err;
          }
        });
      },
    },
    // After the JSON parser's wrapper above: the limit is applied before it reads.
    undeclaredBodyLimit(maxBodyBytes),
  ];
}

function bodyTooLarge(limit: number): GraphQLError {
  return new GraphQLError(`Request body is larger than the limit of ${limit} bytes.`, { extensions: { code: "REQUEST_ENTITY_TOO_LARGE", http: { status: 413 } } });
}

/**
 * The body limit for a body sent without a declared length (chunked): read here, counting, and refused with 413
 * past `maxBytes`. A declared length needs no counting: src/http/guard.ts refused one over the limit before
 * Yoga, and node:http never hands on more body than the request declared. Yoga's own maxRequestBodySize (off:
 * src/http/limits.ts) pipes every body through a counting stream, declared length or not (a TransformStream,
 * a stream pipeline, an AbortController per request): without it a customerMeter read took about half the
 * CPU (same process, alternating runs: 865 → 471 µs per request).
 */
function undeclaredBodyLimit(maxBytes: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      if (!requestParser || request.headers.get("content-length") !== null) return;
      setRequestParser(async (req) => {
        if (!req.body) return requestParser(req);
        const reader = req.body.getReader();
        const chunks: Uint8Array[] = [];
        let size = 0;
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
          size += chunk.value.byteLength;
          if (size > maxBytes) {
            await reader.cancel().catch(() => {});
            throw bodyTooLarge(maxBytes);
          }
          chunks.push(chunk.value);
        }
        return requestParser(new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body: Buffer.concat(chunks) }));
      });
    },
  };
}

/** Yoga's `cors` option: only listed origins get CORS headers (`*`: any origin), never with credentials. */
export function corsFromAllowList(origins: readonly string[]): false | ((request: Request) => CORSOptions | false) {
  if (origins.length === 0) return false;
  const any = origins.includes("*");
  return (request) => {
    const origin = request.headers.get("origin");
    if (!origin || (!any && !origins.includes(origin))) return false;
    return {
      origin: any ? "*" : [origin],
      credentials: false,
      methods: ["GET", "POST", "OPTIONS"],
      allowedHeaders: ["authorization", "content-type", CSRF_HEADER],
      maxAge: 600,
    };
  };
}
