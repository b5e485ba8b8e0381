import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import express, { Router } from 'express';

export const DOCS_PATH = '/docs';

const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ledgerline API reference</title>
<link rel="stylesheet" href="${DOCS_PATH}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="${DOCS_PATH}/init.js"></script>
</body>
</html>
`;

// A separate script rather than an inline one, so a strict Content-Security-Policy still holds.
const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

/**
 * The rendered API reference: Swagger UI (swagger-ui-dist from node_modules, no CDN) over
 * /openapi.json, at /docs.
 */
export function docsRoutes(): Router {
  const assets = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  const router = Router();
  const csp = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'";
  router.get(DOCS_PATH, (_req, res) => {
    res.setHeader('Content-Security-Policy', csp);
    res.type('html').send(PAGE);
  });
  router.get(`${DOCS_PATH}/init.js`, (_req, res) => {
    res.type('application/javascript').send(INIT);
  });
  router.use(`${DOCS_PATH}/assets`, express.static(assets, { index: false, fallthrough: true, maxAge: '1h' }));
  return router;
}
