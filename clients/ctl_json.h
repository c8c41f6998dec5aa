/* etracectl's --json: one generic printer of any protobuf-c message as the protobuf
 * canonical JSON mapping (lowerCamelCase names, 64-bit integers as strings, enums by
 * name), over the message descriptors, with every field printed at its default value too
 * (so each command has one shape: empty lists as [], false, 0, "") except absent
 * messages and unset oneof members, and model hashes (uint64 fields named *_hash) as
 * 16 hex digits, as the text output prints them. Client layer. */
#ifndef ETRACE_CTL_JSON_H
#define ETRACE_CTL_JSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

/* Prints m as one JSON object followed by a newline. */
void ctl_json_print(FILE *f, const ProtobufCMessage *m);

#endif
