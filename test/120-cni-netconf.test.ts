// The pure core of the `appnet` CNI plugin (control/cni/netconf.ts): the runtime's environment and
// network configuration in, the instance request, the CNI result and error objects out.
import test, { type ExecutionContext } from 'ava';
import {
  CniError, buildResult, checkAgainst, gatewayOf, instanceName, instanceRequest, parseCniArgs, parseEnv, parseNetconf, versionResult,
} from '../control/cni/netconf.ts';

const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abcdef0123456789', CNI_NETNS: '/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const CONF = { cniVersion: '1.0.0', name: 'blue-net', type: 'appnet', network: 'blue' };
/** `fn` fails with a CniError of `code` whose message matches `msg`. */
function fails(t: ExecutionContext, fn: () => unknown, code: number, msg: RegExp = /./): void {
  const e = t.throws(fn, { instanceOf: CniError });
  t.is(e?.code, code, e?.message);
  t.regex(e?.message ?? '', msg);
}

test('environment: commands, required variables, CNI_ARGS with IgnoreUnknown', (t) => {
  const env = parseEnv({ ...ENV, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=web;FOO=bar' });
  t.like(env, { command: 'ADD', containerId: 'abcdef0123456789', netns: '/run/netns/cni-1', ifname: 'eth0' });
  t.is(env.args.get('K8S_POD_NAME'), 'web');
  fails(t, () => parseEnv({ ...ENV, CNI_COMMAND: 'ATTACH' }), 4, /CNI_COMMAND "ATTACH"/);
  fails(t, () => parseEnv({ ...ENV, CNI_NETNS: 'relative' }), 4, /CNI_NETNS/);
  fails(t, () => parseEnv({ ...ENV, CNI_IFNAME: undefined }), 4, /CNI_IFNAME/);
  fails(t, () => parseEnv({ ...ENV, CNI_CONTAINERID: '' }), 4, /CNI_CONTAINERID/);
  // DEL after the namespace is gone: no CNI_NETNS is fine.
  t.is(parseEnv({ ...ENV, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '');
  t.is(parseEnv({ CNI_COMMAND: 'VERSION' }).command, 'VERSION');
  fails(t, () => parseCniArgs('FOO=bar'), 4, /FOO is not known/);
  fails(t, () => parseCniArgs('novalue'), 4, /not KEY=VALUE/);
});

test('netconf: versions, required fields, unknown fields, runtimeConfig', (t) => {
  const conf = parseNetconf(JSON.stringify({ ...CONF, api: 'http://198.18.0.1:7878/', host: 'h1', runtimeConfig: { mac: '02:00:00:00:00:09', ips: ['198.18.9.7/24'] } }), 'ADD');
  t.like(conf, { network: 'blue', api: 'http://198.18.0.1:7878', host: 'h1', mac: '02:00:00:00:00:09', address: '198.18.9.7', dnsZone: 'appnet.internal' });
  fails(t, () => parseNetconf('{', 'ADD'), 6);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, cniVersion: '2.0.0' }), 'ADD'), 1, /2\.0\.0/);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, bogus: 1 }), 'ADD'), 2, /bogus/);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, network: undefined }), 'ADD'), 7, /network/);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, type: 'bridge' }), 'ADD'), 7, /type/);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, api: 'ftp://x' }), 'ADD'), 7, /api/);
  fails(t, () => parseNetconf(JSON.stringify(CONF), 'CHECK'), 7, /prevResult/);
  // A CA for the API's certificate: a file, for an https api only.
  t.is(parseNetconf(JSON.stringify({ ...CONF, api: 'https://198.18.0.1:7878', ca: '/etc/appnet/ca.pem' }), 'ADD').ca, '/etc/appnet/ca.pem');
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, ca: '/etc/appnet/ca.pem' }), 'ADD'), 7, /ca needs an https api/);
  fails(t, () => parseNetconf(JSON.stringify({ ...CONF, api: 'https://198.18.0.1:7878', ca: 7 }), 'ADD'), 7, /ca must be a string/);
  // VERSION reads the version only.
  t.deepEqual(versionResult(parseNetconf(JSON.stringify({ cniVersion: '0.4.0' }), 'VERSION').cniVersion), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('STATUS and GC (1.1.0): the command alone in the environment; the valid attachments parsed; older versions refused', (t) => {
  t.like(parseEnv({ CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }), { command: 'STATUS' });
  t.like(parseEnv({ CNI_COMMAND: 'GC' }), { command: 'GC' });
  fails(t, () => parseEnv({ CNI_COMMAND: 'INIT' }), 4, /INIT.*not one of ADD, DEL, CHECK, VERSION, STATUS, GC/);
  const v11 = { ...CONF, cniVersion: '1.1.0' };
  t.is(parseNetconf(JSON.stringify(v11), 'STATUS').network, 'blue');
  const attachments = [{ containerID: 'abc', ifname: 'eth0' }, { containerID: 'def', ifname: 'net1' }];
  t.deepEqual(parseNetconf(JSON.stringify({ ...v11, 'cni.dev/valid-attachments': attachments }), 'GC').validAttachments, attachments);
  // The spec's earlier name for the field is read too; none listed is an empty list.
  t.deepEqual(parseNetconf(JSON.stringify({ ...v11, 'cni.dev/attachments': attachments.slice(1) }), 'GC').validAttachments, attachments.slice(1));
  t.deepEqual(parseNetconf(JSON.stringify(v11), 'GC').validAttachments, []);
  fails(t, () => parseNetconf(JSON.stringify({ ...v11, 'cni.dev/valid-attachments': {} }), 'GC'), 7, /must be an array/);
  fails(t, () => parseNetconf(JSON.stringify({ ...v11, 'cni.dev/valid-attachments': [{ ifname: 'eth0' }] }), 'GC'), 7, /valid-attachments\.0\.containerID/);
  fails(t, () => parseNetconf(JSON.stringify(CONF), 'STATUS'), 1, /STATUS needs cniVersion 1\.1\.0/);
  fails(t, () => parseNetconf(JSON.stringify(CONF), 'GC'), 1, /GC needs cniVersion 1\.1\.0/);
});

test('instance name and request: the pod name when valid, else the container id', (t) => {
  const env = (args: string) => parseEnv({ ...ENV, CNI_ARGS: args });
  t.is(instanceName(env('K8S_POD_NAME=web;K8S_POD_NAMESPACE=web')), 'web');
  t.is(instanceName(env('K8S_POD_NAME=web;K8S_POD_NAMESPACE=shop')), 'shop.web');
  t.is(instanceName(env('')), 'cni-abcdef012345');
  t.is(instanceName(env('K8S_POD_NAME=-bad')), 'cni-abcdef012345');
  const conf = parseNetconf(JSON.stringify({ ...CONF, inbounds: [{ name: 'in', port: 80 }], runtimeConfig: { mac: '02:00:00:00:00:09' } }), 'ADD');
  t.deepEqual(instanceRequest(conf, env('K8S_POD_NAME=web'), 'h1'), {
    name: 'web', host: 'h1', netns: '/run/netns/cni-1', interfaces: [{ network: 'blue', device: 'eth0', macaddr: '02:00:00:00:00:09' }], inbounds: [{ name: 'in', port: 80 }],
  });
});

test('result: interface in the sandbox, address with gateway, default route, DNS of the zone; CHECK compares', (t) => {
  const env = parseEnv(ENV);
  const a = { device: 'an12345678', macaddr: '02:00:00:00:00:05', ipv4: '198.18.9.5', netblock: '198.18.9.0/24', provideDns: true, namespace: 'alpha', instanceNamespace: 'alpha' };
  const conf = parseNetconf(JSON.stringify(CONF), 'ADD');
  const r = buildResult(conf, env, a);
  t.deepEqual(r, {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'an12345678', mac: '02:00:00:00:00:05', sandbox: '/run/netns/cni-1' }],
    ips: [{ address: '198.18.9.5/24', gateway: '198.18.9.1', interface: 0 }],
    routes: [{ dst: '0.0.0.0/0', gw: '198.18.9.1' }],
    dns: { nameservers: ['198.18.9.1'], domain: 'alpha.appnet.internal', search: ['alpha.appnet.internal'] },
  });
  t.is(buildResult(parseNetconf(JSON.stringify({ ...CONF, cniVersion: '0.3.1' }), 'ADD'), env, a).ips![0]!.version, '4');
  t.deepEqual(buildResult(conf, env, { ...a, provideDns: false }).dns, {});
  t.is(gatewayOf('198.18.255.0/24'), '198.18.255.1');
  t.is(checkAgainst(r, a), null);
  t.regex(checkAgainst(r, { ...a, ipv4: '198.18.9.6' }) ?? '', /address is 198\.18\.9\.6, ADD gave 198\.18\.9\.5/);
  t.regex(checkAgainst(r, { ...a, macaddr: '02:00:00:00:00:06' }) ?? '', /MAC/);
  t.regex(checkAgainst(r, { ...a, device: 'eth1' }) ?? '', /interface is eth1, ADD gave an12345678/);
});

test('the plugin setup installs: /opt/cni/bin/appnet answers VERSION with an empty environment, as runtimes run it', async (t) => {
  const { execFile } = await import('node:child_process');
  const out = await new Promise<string>((resolve, reject) => {
    const child = execFile('/opt/cni/bin/appnet', [], { env: { CNI_COMMAND: 'VERSION' } }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin!.end(JSON.stringify({ cniVersion: '1.1.0' }));
  });
  t.deepEqual(JSON.parse(out), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});
