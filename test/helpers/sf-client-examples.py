#!/usr/bin/python3
"""Every example of Shaken Fist's networks page (docs/developer_guide/api_reference/networks.md),
run against an appnet API with the same HTTP exchanges as shakenfist_client.apiclient.Client:

  - GET <base> with no token (the capabilities page; check_capability is a substring test);
  - GET <base> again without following redirects (the client's probe before authenticating);
  - POST <base>/auth {"namespace", "key"} -> {"access_token"};
  - then each call with "Authorization: Bearer <jwt>", its parameters as a JSON body on every
    method (GET and DELETE included) when it has any, Content-Type only when there is a body,
    and 200 the only success (400/401/403/404/406/409/500/507 raise, as the client maps them).
    A 406 is retried once a second, as the client does for "dependencies not ready".

Written for this test from a reading of the client; no client code is copied.
Usage: sf-client-examples.py BASE_URL NAMESPACE KEY PING_NETWORK PING_ADDRESS
Prints one JSON object: each example's result, for the calling test to check.
"""
import ipaddress
import json
import sys
import time

import requests

USER_AGENT = 'Mozilla/5.0 (Ubuntu; Linux x86_64) Shaken Fist/0.7.0'
ERRORS = {400: 'RequestMalformed', 401: 'Unauthenticated', 403: 'Unauthorized', 404: 'ResourceNotFound',
          406: 'DependenciesNotReady', 409: 'ResourceStateConflict', 500: 'InternalServerError',
          507: 'InsufficientResources'}


class ApiFailure(Exception):
    def __init__(self, kind, method, url, status, text):
        super().__init__('%s: %s %s -> %d %s' % (kind, method, url, status, text))
        self.kind = kind
        self.status = status


class Client:
    def __init__(self, base_url, namespace, key):
        self.base_url = base_url
        self.namespace = namespace
        self.key = key
        self.auth = None
        self.exchanges = []
        self.root_html = requests.request('GET', self.base_url, allow_redirects=True).text

    def check_capability(self, name):
        return name in self.root_html

    def _send(self, method, path, data=None, allow_redirects=True):
        url = self.base_url + path
        headers = {'Authorization': self.auth, 'User-Agent': USER_AGENT}
        body = None
        if data:
            headers['Content-Type'] = 'application/json'
            body = json.dumps(data, indent=4, sort_keys=True)
        r = requests.request(method, url, data=body, headers=headers, allow_redirects=allow_redirects)
        self.exchanges.append([method, path, r.status_code])
        if r.status_code in ERRORS:
            raise ApiFailure(ERRORS[r.status_code], method, url, r.status_code, r.text)
        if r.status_code != 200 and not (not allow_redirects and r.status_code == 301):
            raise ApiFailure('APIException', method, url, r.status_code, r.text)
        return r

    def _login(self):
        r = requests.request('POST', self.base_url + '/auth',
                             data=json.dumps({'namespace': self.namespace, 'key': self.key}),
                             headers={'Content-Type': 'application/json', 'User-Agent': USER_AGENT})
        self.exchanges.append(['POST', '/auth', r.status_code])
        if r.status_code != 200:
            raise ApiFailure('Unauthenticated', 'POST', '/auth', r.status_code, r.text)
        return 'Bearer %s' % r.json()['access_token']

    def request(self, method, path, data=None):
        if not self.auth:
            probe = self._send('GET', '', allow_redirects=False)
            if probe.status_code == 301:
                self.base_url = probe.headers['Location']
            self.auth = self._login()
        deadline = time.time() + 60
        while True:
            try:
                try:
                    return self._send(method, path, data)
                except ApiFailure as e:
                    if e.kind != 'Unauthenticated':
                        raise
                    self.auth = self._login()
                    return self._send(method, path, data)
            except ApiFailure as e:
                if e.kind != 'DependenciesNotReady' or time.time() > deadline:
                    raise
                time.sleep(1)

    # The network calls of the client, one method each.
    def allocate_network(self, netblock, provide_dhcp, provide_nat, name, namespace=None):
        n = self.request('POST', '/networks', {'netblock': netblock, 'provide_dhcp': provide_dhcp,
                                               'provide_nat': provide_nat, 'name': name,
                                               'namespace': namespace}).json()
        deadline = time.time() + 60
        while n['state'] in ('initial', 'creating') and time.time() < deadline:
            time.sleep(1)
            n = self.get_network(n['uuid'])
        return n

    def get_network(self, ref, namespace=None):
        if namespace and not self.check_capability('get-network-namespace'):
            raise RuntimeError('incapable: get-network-namespace')
        return self.request('GET', '/networks/' + ref, {'namespace': namespace} if namespace else None).json()

    def get_networks(self, all=False):
        return self.request('GET', '/networks', {'all': all}).json()

    def delete_network(self, ref, namespace=None):
        return self.request('DELETE', '/networks/' + ref, {'namespace': namespace} if namespace else None).json()

    def delete_all_networks(self, namespace, clean_wait=False):
        return self.request('DELETE', '/networks', {'confirm': True, 'namespace': namespace, 'clean_wait': clean_wait}).json()

    def get_network_events(self, ref):
        return self.request('GET', '/networks/' + ref + '/events').json()

    def get_network_interfaces(self, ref):
        return self.request('GET', '/networks/' + ref + '/interfaces').json()

    def ping(self, ref, address):
        return self.request('GET', '/networks/' + ref + '/ping/' + address).json()

    def get_network_addresses(self, ref):
        if not self.check_capability('list-addresses'):
            raise RuntimeError('incapable: list-addresses')
        return self.request('GET', '/networks/' + ref + '/addresses').json()

    def route_network_address(self, ref):
        if not self.check_capability('route-addresses'):
            raise RuntimeError('incapable: route-addresses')
        return self.request('POST', '/networks/' + ref + '/route').json()

    def unroute_network_address(self, ref, address):
        if not self.check_capability('route-addresses'):
            raise RuntimeError('incapable: route-addresses')
        return self.request('DELETE', '/networks/' + ref + '/route/' + address).json()

    def set_network_metadata_item(self, ref, key, value):
        return self.request('PUT', '/networks/' + ref + '/metadata/' + key, {'value': value}).json()

    def get_network_metadata(self, ref):
        return self.request('GET', '/networks/' + ref + '/metadata').json()

    def delete_network_metadata_item(self, ref, key):
        return self.request('DELETE', '/networks/' + ref + '/metadata/' + key).json()

    def add_network_dns_entry(self, ref, name, value):
        if not self.check_capability('extra-dns-entries'):
            raise RuntimeError('incapable: extra-dns-entries')
        return self.request('POST', '/networks/' + ref + '/dns', {'name': name, 'value': value}).json()

    def delete_network_dns_entry(self, ref, name):
        return self.request('DELETE', '/networks/' + ref + '/dns', {'name': name}).json()


def main():
    base_url, namespace, key, ping_network, ping_address = sys.argv[1:6]
    sf_client = Client(base_url, namespace, key)
    out = {'capabilities': [c for c in ('list-addresses', 'route-addresses', 'get-network-namespace',
                                        'provide-dns', 'extra-dns-entries', 'interface-metadata')
                            if sf_client.check_capability(c)]}

    # Example: create a network, exactly as the page writes it.
    n = sf_client.allocate_network('10.0.0.0/24', True, True, 'example')
    out['create'] = n

    # Example: delete a network (a second one, as the page does), waiting for `deleted`.
    d = sf_client.allocate_network('10.0.0.0/24', True, True, 'example')
    d = sf_client.delete_network(d['uuid'])
    waits = 0
    while d['state'] != 'deleted' and waits < 60:
        time.sleep(1)
        waits += 1
        d = sf_client.get_network(d['uuid'])
    out['delete'] = d

    # Example: get a single network; and with the namespace (get-network-namespace).
    out['get'] = sf_client.get_network(n['uuid'])
    out['get_in_namespace'] = sf_client.get_network(n['uuid'], namespace=namespace)

    # Example: list networks.
    out['list'] = sf_client.get_networks()

    # Examples on the network that has an instance: events, interfaces, ping.
    out['events'] = sf_client.get_network_events(ping_network)
    out['interfaces'] = sf_client.get_network_interfaces(ping_network)
    out['ping'] = sf_client.ping(ping_network, ping_address)

    # Example: list address allocations, printed as the page prints them.
    addresses = sf_client.get_network_addresses(n['uuid'])
    info_by_addr = {}
    for addr in addresses:
        info_by_addr[int(ipaddress.IPv4Address(addr['address']))] = addr
    lines = ['address,type,user,comment']
    for addr in sorted(info_by_addr.keys()):
        lines.append('%s,%s,%s,%s' % (info_by_addr[addr]['address'], info_by_addr[addr]['type'],
                                      ' '.join(info_by_addr[addr]['user']), info_by_addr[addr]['comment']))
    out['addresses'] = lines

    # Examples: add and remove a routed address.
    routed = sf_client.route_network_address(n['uuid'])
    out['routed'] = routed
    out['unrouted'] = sf_client.unroute_network_address(n['uuid'], routed)

    # Examples: set, get and delete metadata.
    sf_client.set_network_metadata_item(n['uuid'], 'foo', 'bar')
    out['metadata'] = sf_client.get_network_metadata(n['uuid'])
    sf_client.delete_network_metadata_item(n['uuid'], 'foo')
    out['metadata_after_delete'] = sf_client.get_network_metadata(n['uuid'])

    # Extra DNS entries, as the extra-dns-entries capability promises ({name, value}; DELETE with a body).
    dns_net = sf_client.request('POST', '/networks', {'netblock': '10.0.1.0/24', 'name': 'dns', 'provide_dhcp': True,
                                                      'provide_nat': False, 'provide_dns': True, 'namespace': None}).json()
    out['dns_added'] = sf_client.add_network_dns_entry(dns_net['uuid'], 'db', '10.0.1.20')
    out['dns_deleted'] = sf_client.delete_network_dns_entry(dns_net['uuid'], 'db')

    # A failure maps to the client's exception, from the status code.
    try:
        sf_client.get_network('no-such-network')
        out['missing'] = 'no exception'
    except ApiFailure as e:
        out['missing'] = e.kind

    # Delete everything in the namespace, as the namespace clean-up test does.
    out['delete_all'] = sf_client.delete_all_networks(namespace, clean_wait=True)
    out['exchanges'] = sf_client.exchanges
    print(json.dumps(out))


if __name__ == '__main__':
    main()
