/**
 * The bank client's webhook endpoint: an HTTP server that verifies each delivery's Standard
 * Webhooks signature and counts deliveries per event id (webhook-id). 2xx for a good
 * signature, 400 for a bad one (which the service then retries).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export class WebhookReceiver {
  /** Deliveries received with a valid signature, per event id. */
  readonly received = new Map<string, number>();
  badSignatures = 0;
  /** Set once the endpoint is registered (the secret is shown once). */
  secret: string | undefined;
  url = '';
  private readonly server = createServer((req, res) => this.handle(req, res));

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    receiver.server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/hooks/bank`;
    return receiver;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      try {
        if (!this.secret) throw new Error('no secret yet');
        new Webhook(this.secret).verify(body, headers);
        const id = headers['webhook-id']!;
        this.received.set(id, (this.received.get(id) ?? 0) + 1);
        res.writeHead(204).end();
      } catch {
        this.badSignatures++;
        res.writeHead(400).end();
      }
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
