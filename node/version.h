/*
 * version — what `galgod --version` prints: Galgo's own version and the Iggy release and client protocol
 * it speaks (the server version it reports to SDKs is SERVER_VERSION in node/srv_int.h).
 */
#ifndef GALGO_VERSION_H
#define GALGO_VERSION_H

#define GALGO_VERSION "0.1.0"
#define GALGO_IGGY_COMPAT "speaks Iggy 0.9, client protocol 0.11, VSR framing"

#endif /* GALGO_VERSION_H */
