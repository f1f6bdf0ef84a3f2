/**
 * Entry point of one node-agent data-path worker, forked by the primary's proxy shell
 * (common/proxy-shell.ts): the agent's data plane in the shared worker runtime.
 */
import cluster from 'node:cluster';
import { setDefaultHighWaterMark } from 'node:stream';
import { runProxyWorker } from '../common/proxy-worker.ts';
import { STREAM_HIGH_WATER_MARK } from './dataplane.ts';
import { createAgentPlane } from './plane.ts';
import type { AgentPlaneSettings } from './plane.ts';

if (cluster.isWorker) {
  // Before any socket exists, as in the primary (main.ts).
  setDefaultHighWaterMark(false, STREAM_HIGH_WATER_MARK);
  await runProxyWorker<AgentPlaneSettings>({ component: 'node-agent', create: (o) => createAgentPlane(o) });
}
