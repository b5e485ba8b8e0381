import type { Response } from 'express';
import { ERROR_MAP, type ErrorCode } from './error-map.ts';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance?: string;
  requestId?: string;
  errors?: { path: string; message: string }[];
}

/** An error the HTTP layer renders as an RFC 9457 problem with a stable code. */
export class HttpProblem extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly errors?: { path: string; message: string }[],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export function sendProblem(
  res: Response,
  code: ErrorCode,
  detail: string,
  extra: { errors?: Problem['errors']; headers?: Record<string, string> } = {},
): void {
  const { status, title } = ERROR_MAP[code];
  const requestId = res.getHeader('X-Request-Id');
  const body: Problem = {
    type: `https://ledgerline.dev/problems/${code.replaceAll('_', '-')}`,
    title,
    status,
    code,
    detail,
    ...(typeof requestId === 'string' ? { requestId } : {}),
    ...(extra.errors ? { errors: extra.errors } : {}),
  };
  for (const [k, v] of Object.entries(extra.headers ?? {})) res.setHeader(k, v);
  res.status(status).type('application/problem+json').send(JSON.stringify(body));
}
