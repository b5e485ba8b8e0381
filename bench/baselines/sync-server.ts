/**
 * Baseline 1: the architecture Ledgerline replaces. A synchronous express + pg endpoint that
 * runs the whole ledger transaction inside the HTTP request (`POST /transfer`), one
 * transaction per transfer, answering 200 when it committed.
 * Run: node --import tsx bench/baselines/sync-server.ts  (DATABASE_URL, PORT, CLIENT_ID)
 */
import express from 'express';
import pg from 'pg';
import { createExpressServer } from '../../src/infra/express-server.ts';
import { transferOnce } from './ledger-transaction.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.PG_POOL_MAX ?? 20) });
const clientId = process.env.CLIENT_ID ?? '';
const app = express();
app.use(express.json());
app.post('/transfer', async (req, res) => {
  const { fromWalletId, toWalletId, amount } = req.body as { fromWalletId: string; toWalletId: string; amount: string };
  for (let attempt = 0; ; attempt++) {
    const client = await pool.connect();
    try {
      const status = await transferOnce(client, { clientId, from: fromWalletId, to: toWalletId, amount: BigInt(amount) });
      res.json({ status });
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if ((code !== '40P01' && code !== '40001') || attempt > 5) {
        res.status(500).json({ error: 'failed' });
        return;
      }
    } finally {
      client.release();
    }
  }
});
// The same HTTP server set-up as our API (src/infra/express-server.ts), so the comparison is
// of the architectures, not of how express is hosted.
const server = createExpressServer(app).listen(Number(process.env.PORT ?? 3999), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
