/**
 * The node agent's data plane as the proxy shell (common/proxy-shell.ts) runs it: a
 * DataPlane fed the AgentState built from each config, recording into an AgentMetrics.
 * The same factory builds it in a worker (node-agent/worker.ts) and in the primary with
 * `--workers 0`.
 */
import { createAccessLog } from '../common/access-log.ts';
import type { PlaneOptions, ProxyCert, ProxyPlane } from '../common/proxy-protocol.ts';
import type { ProxyConfig } from '../common/proxy-config.ts';
import { AgentState } from './state.ts';
import { AgentMetrics } from './metrics.ts';
import { DataPlane } from './dataplane.ts';
import type { DataPlanePorts, OpenConnection } from './dataplane.ts';

/** What the agent's plane needs besides the shell's options (JSON: a worker gets it on argv). */
export interface AgentPlaneSettings {
  node: string;
  host?: string;
  ports?: Partial<DataPlanePorts>;
  connectTimeoutMs?: number;
  poolIdleMs?: number;
}

/** In-process extras: the primary's own metrics and the state it has already indexed. */
export interface AgentPlaneHooks {
  /** Records into these (default a fresh AgentMetrics, as in a worker). */
  metrics?: AgentMetrics;
  /** The AgentState for a config (default: build it); the primary hands over the one it built to check the config. */
  stateFor?: (config: ProxyConfig) => AgentState;
}

/** The agent's DataPlane behind the shell's plane interface. */
export type AgentPlane = ProxyPlane<DataPlanePorts, OpenConnection>;

/** Binds the agent's data path (15001/15006/15008) and adapts it to the shell. */
export async function createAgentPlane(o: PlaneOptions<AgentPlaneSettings>, hooks: AgentPlaneHooks = {}): Promise<AgentPlane> {
  const s = o.settings;
  const metrics = hooks.metrics ?? new AgentMetrics();
  const stateFor = hooks.stateFor ?? ((c: ProxyConfig) => AgentState.build(c, s.node));
  const accessLog = createAccessLog();
  // Lines are batched per event-loop turn: the last turn's must not be lost on exit.
  process.once('exit', () => accessLog.flush());
  const dp = await DataPlane.create({
    log: o.log, metrics, accessLog, reusePort: o.reusePort,
    ...(s.host !== undefined ? { host: s.host } : {}),
    ...(s.ports !== undefined ? { ports: s.ports } : {}),
    ...(s.connectTimeoutMs !== undefined ? { connectTimeoutMs: s.connectTimeoutMs } : {}),
    ...(s.poolIdleMs !== undefined ? { poolIdleMs: s.poolIdleMs } : {}),
  });
  return {
    get ports() { return dp.ports; },
    registry: metrics.registry,
    setConfig: (config) => { dp.setState(stateFor(config)); },
    setCerts: (certs: readonly ProxyCert[]) => { dp.setCerts(certs); },
    connections: () => dp.connections(),
    close: (deadlineMs) => dp.close(deadlineMs),
  };
}
