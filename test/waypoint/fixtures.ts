// Cluster objects for the waypoint tests: namespace demo (bound to waypoint demo/wp),
// service echo (10.96.0.10:80) with pods v1 (127.0.3.1) and v2 (127.0.3.2) listening on
// 8080, and services echo-v1 / echo-v2 (10.96.0.11 / .12) selecting one version each.

export const VIP = '10.96.0.10:80';
/** Pod addresses on loopback net 127.0.<net>.0/24: test files running in parallel use different nets. */
export function podIps(net: number): { POD_V1: string; POD_V2: string; H2_POD: string } {
  return { POD_V1: `127.0.${net}.1`, POD_V2: `127.0.${net}.2`, H2_POD: `127.0.${net}.3` };
}
export const { POD_V1, POD_V2, H2_POD } = podIps(3);

function pod(name: string, ip: string, labels: Record<string, string>): string {
  return `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: demo, uid: uid-${name}, labels: ${JSON.stringify(labels)} }
spec: { nodeName: node-1, serviceAccountName: echo }
status: { phase: Running, podIP: ${ip}, podIPs: [{ ip: ${ip} }], conditions: [{ type: Ready, status: "True" }] }
`;
}

function service(name: string, ip: string, selector: Record<string, string>, pods: { name: string; ip: string }[], o: { appProtocol?: string; targetPort?: number } = {}): string {
  const tp = o.targetPort ?? 8080;
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  clusterIP: ${ip}
  selector: ${JSON.stringify(selector)}
  ports: [{ name: http, port: 80, targetPort: ${tp}, protocol: TCP${o.appProtocol !== undefined ? `, appProtocol: ${o.appProtocol}` : ''} }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
addressType: IPv4
metadata: { name: ${name}-x, namespace: demo, labels: { kubernetes.io/service-name: ${name} } }
endpoints:
${pods.map((p) => `  - { addresses: [${p.ip}], conditions: { ready: true }, nodeName: node-1, targetRef: { kind: Pod, name: ${p.name}, namespace: demo, uid: uid-${p.name} } }`).join('\n')}
ports: [{ name: http, port: ${tp}, protocol: TCP }]
`;
}

/** The base cluster: namespaces, the waypoint Gateway, pods and services. */
export function baseCluster(net = 3): Record<string, string> {
  const { POD_V1, POD_V2, H2_POD } = podIps(net);
  return {
    'ns.yaml': `apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { rondo.dev/use-waypoint: wp } }
---
apiVersion: v1
kind: Namespace
metadata: { name: client }
---
apiVersion: v1
kind: Namespace
metadata: { name: other }
`,
    'gateway.yaml': `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: demo }
spec:
  gatewayClassName: rondo-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`,
    'pods.yaml': [pod('echo-v1', POD_V1, { app: 'echo', version: 'v1' }), pod('echo-v2', POD_V2, { app: 'echo', version: 'v2' }), pod('grpc-1', H2_POD, { app: 'grpc' })].join('---\n'),
    'services.yaml': [
      service('echo', '10.96.0.10', { app: 'echo' }, [{ name: 'echo-v1', ip: POD_V1 }, { name: 'echo-v2', ip: POD_V2 }]),
      service('echo-v1', '10.96.0.11', { app: 'echo', version: 'v1' }, [{ name: 'echo-v1', ip: POD_V1 }]),
      service('echo-v2', '10.96.0.12', { app: 'echo', version: 'v2' }, [{ name: 'echo-v2', ip: POD_V2 }]),
      service('grpc', '10.96.0.13', { app: 'grpc' }, [{ name: 'grpc-1', ip: H2_POD }], { appProtocol: 'kubernetes.io/h2c', targetPort: 9090 }),
    ].join('---\n'),
  };
}

/** HTTPRoute on echo: header x-version: v2 → v2, /admin → v1, /old → redirect, /slow with a 300 ms timeout, rest 90/10. */
export const ECHO_ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
    - matches: [{ headers: [{ name: x-version, value: v2 }] }]
      backendRefs: [{ name: echo-v2, port: 80 }]
    - matches: [{ path: { type: Exact, value: /old } }]
      filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /new }, statusCode: 301 } }]
    - matches: [{ path: { type: PathPrefix, value: /api } }]
      filters:
        - { type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /v1/api } } }
        - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-added, value: yes }], remove: [x-secret] } }
        - { type: ResponseHeaderModifier, responseHeaderModifier: { add: [{ name: x-route, value: api }] } }
      backendRefs: [{ name: echo-v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      timeouts: { request: 300ms }
      backendRefs: [{ name: echo-v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /only-get }, method: GET }]
      backendRefs: [{ name: echo-v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: echo-v1, port: 80, weight: 90 }, { name: echo-v2, port: 80, weight: 10 }]
`;

/** DENY POST /admin* to the echo pods; ALLOW-less otherwise. */
export const DENY_ADMIN = `apiVersion: security.rondo.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: no-admin-writes, namespace: demo }
spec:
  selector: { matchLabels: { app: echo } }
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST], paths: ["/admin*"] } }] }]
`;
