/**
 * Builders for the lab specs the end-to-end tests write: each returns one YAML document,
 * `labSpec()` joins them. Keeps every test's topology a few readable lines.
 */

/** The Lab document: 2 nodes with the mesh unless told otherwise. */
export function labDoc(o: { nodes?: number; mesh?: boolean; meshOptions?: Record<string, number | string> } = {}): string {
  const opts = o.meshOptions === undefined ? '' : `, meshOptions: ${JSON.stringify(o.meshOptions)}`;
  return `apiVersion: lab.rondo.dev/v1
kind: Lab
spec: { nodes: ${o.nodes ?? 2}, mesh: ${o.mesh ?? true}${opts} }
`;
}

/** A Namespace, enrolled in the mesh when `ambient`. */
export function namespaceDoc(name: string, o: { ambient?: boolean } = {}): string {
  const labels = o.ambient === true ? ', labels: { rondo.dev/dataplane-mode: ambient }' : '';
  return `apiVersion: v1
kind: Namespace
metadata: { name: ${name}${labels} }
`;
}

export interface DeploymentOpts {
  namespace: string;
  name: string;
  /** The container's command line. */
  command: string[];
  node?: string;
  /** Defaults to the deployment's name; `null` leaves it unset. */
  serviceAccount?: string | null;
  /** Pod labels besides `app: <name>`. */
  labels?: Record<string, string>;
  replicas?: number;
}

/** A one-container Deployment whose pods carry `app: <name>`. */
export function deploymentDoc(o: DeploymentOpts): string {
  const labels = { app: o.name, ...o.labels };
  const sa = o.serviceAccount === null ? '' : `\n      serviceAccountName: ${o.serviceAccount ?? o.name}`;
  const node = o.node === undefined ? '' : `\n      nodeName: ${o.node}`;
  return `apiVersion: apps/v1
kind: Deployment
metadata: { name: ${o.name}, namespace: ${o.namespace} }
spec:
  replicas: ${o.replicas ?? 1}
  selector: { matchLabels: { app: ${o.name} } }
  template:
    metadata: { labels: ${JSON.stringify(labels)} }
    spec:${sa}${node}
      containers: [{ name: c, image: x, command: ${JSON.stringify(o.command)} }]
`;
}

/** A ClusterIP Service selecting `app: <selector ?? name>`, one port. */
export function serviceDoc(o: { namespace: string; name: string; port: number; targetPort: number; selector?: string }): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${o.name}, namespace: ${o.namespace} }
spec:
  selector: { app: ${o.selector ?? o.name} }
  ports: [{ port: ${o.port}, targetPort: ${o.targetPort} }]
`;
}

/** A TCP echo server command of the demo app. */
export function tcpEcho(port: number): string[] {
  return ['rondo-demo', 'tcp-echo', '--port', String(port)];
}

/** Joins documents into one multi-document spec. */
export function labSpec(...docs: string[]): string {
  return docs.join('---\n');
}
