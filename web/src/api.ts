// The gateway's public API over gRPC-Web, with the anonymous session kept in localStorage.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";
import { JobService } from "./gen/mangakai/v1/jobs_pb";
import { SessionService } from "./gen/mangakai/v1/sessions_pb";

const TOKEN_KEY = "mangakai.session";
// The gateway's web listener serves this app, so the API is on the same origin unless a
// build (e.g. the Vite dev server) points it elsewhere.
const baseUrl = (import.meta.env.VITE_GATEWAY_URL as string | undefined) || window.location.origin;

const sessions = createClient(SessionService, createGrpcWebTransport({ baseUrl }));
let pendingSession: Promise<string> | null = null;

function session(): Promise<string> {
  const stored = localStorage.getItem(TOKEN_KEY);
  if (stored) return Promise.resolve(stored);
  pendingSession ??= sessions
    .createSession({ client: "web" })
    .then((s) => {
      localStorage.setItem(TOKEN_KEY, s.token);
      return s.token;
    })
    .finally(() => {
      pendingSession = null;
    });
  return pendingSession;
}

const authenticate: Interceptor = (next) => async (request) => {
  request.header.set("authorization", `Bearer ${await session()}`);
  return next(request);
};

export const jobs = createClient(
  JobService,
  createGrpcWebTransport({ baseUrl, interceptors: [authenticate] }),
);

/** Runs a call; when the stored session is unknown to the server (e.g. a wiped database), starts a new one once. */
export async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const e = ConnectError.from(err);
    if (e.code === Code.Unauthenticated) {
      localStorage.removeItem(TOKEN_KEY);
      return await run();
    }
    throw err;
  }
}

/** What went wrong, in words for a person, with the fields it concerns. */
export interface Problem {
  code: Code;
  message: string;
  fields: Map<string, string>;
  retryAfterSeconds: number | null;
}

export function describe(err: unknown): Problem {
  const e = ConnectError.from(err);
  const fields = new Map<string, string>();
  for (const detail of e.findDetails(BadRequestSchema)) {
    for (const v of detail.fieldViolations) fields.set(v.field, v.description);
  }
  let retryAfterSeconds: number | null = null;
  for (const info of e.findDetails(RetryInfoSchema)) {
    const delay = info.retryDelay;
    if (delay) retryAfterSeconds = Math.max(1, Math.ceil(Number(delay.seconds) + delay.nanos / 1e9));
  }
  return { code: e.code, message: humanMessage(e, fields, retryAfterSeconds), fields, retryAfterSeconds };
}

function humanMessage(e: ConnectError, fields: Map<string, string>, retry: number | null): string {
  switch (e.code) {
    case Code.InvalidArgument:
      return fields.size ? "Please fix the highlighted fields." : `That request was not valid: ${e.rawMessage}`;
    case Code.ResourceExhausted:
      return retry !== null
        ? `You are going a little fast. Please try again in ${retry} s.`
        : "You are going a little fast. Please wait a moment and try again.";
    case Code.NotFound:
      return "This manga does not exist, or it was made in another browser.";
    case Code.FailedPrecondition:
      return capitalize(e.rawMessage);
    case Code.Unauthenticated:
      return "Your browser session has expired. Reload the page to start a new one.";
    case Code.Unavailable:
    case Code.Unknown:
    case Code.DeadlineExceeded:
    case Code.Canceled:
      return "MangakAI cannot be reached right now. Check your connection and try again.";
    default:
      return `Something went wrong (${Code[e.code]}): ${e.rawMessage}`;
  }
}

function capitalize(text: string): string {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

/** Errors worth retrying a stream for: the network or the server being briefly away. */
export function isTransient(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return ![Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unauthenticated].includes(code);
}
