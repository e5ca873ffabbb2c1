/*
 * tcp_addr — tcp_addr_parse (tcp.h): "host:port" and "[ipv6]:port" into a socket address. Apart from tcp.c
 * because every listener (tcp, ws, http) and the clients parse their addresses with it.
 */
#include "transport/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int tcp_addr_parse(const char *address, struct sockaddr_storage *out, socklen_t *len)
{
	if (!address)
		return -EINVAL;
	char host[256];
	const char *port_str;
	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (!end || end[1] != ':' || (size_t)(end - address - 1) >= sizeof host)
			return -EINVAL;
		memcpy(host, address + 1, (size_t)(end - address - 1));
		host[end - address - 1] = '\0';
		port_str = end + 2;
	} else {
		const char *colon = strrchr(address, ':');
		if (!colon || (size_t)(colon - address) >= sizeof host)
			return -EINVAL;
		memcpy(host, address, (size_t)(colon - address));
		host[colon - address] = '\0';
		if (strchr(host, ':'))
			return -EINVAL; /* an IPv6 address needs brackets */
		port_str = colon + 1;
	}
	if (*port_str == '\0' || strlen(port_str) > 5)
		return -EINVAL;
	unsigned long port = 0;
	for (const char *p = port_str; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port > 65535)
		return -EINVAL;
	if (host[0] == '\0')
		strcpy(host, "0.0.0.0");

	memset(out, 0, sizeof *out);
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		*len = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*len = sizeof *v6;
		return 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return -EINVAL;
	int rc = -EINVAL;
	if (res->ai_addrlen <= sizeof *out) {
		memcpy(out, res->ai_addr, res->ai_addrlen);
		*len = res->ai_addrlen;
		if (out->ss_family == AF_INET)
			v4->sin_port = htons((uint16_t)port);
		else if (out->ss_family == AF_INET6)
			v6->sin6_port = htons((uint16_t)port);
		rc = 0;
	}
	freeaddrinfo(res);
	return rc;
}
