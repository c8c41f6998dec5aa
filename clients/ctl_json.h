/* etracectl's --json: one generic printer of any protobuf-c message as the protobuf
 * canonical JSON mapping (lowerCamelCase names, 64-bit integers as strings, enums by
 * name, default values omitted), over the message descriptors. Client layer. */
#ifndef ETRACE_CTL_JSON_H
#define ETRACE_CTL_JSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

/* Prints m as one JSON object followed by a newline. */
void ctl_json_print(FILE *f, const ProtobufCMessage *m);

#endif
