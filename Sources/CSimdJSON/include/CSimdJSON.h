// A C view of simdjson's DOM parser: parse a document, then read simdjson's own tape.
//
// The tape (simdjson's documented format, doc/tape.md) is a flat array of 64-bit words: the
// top byte is a type character ('{' '[' '"' 'l' 'u' 'd' 't' 'f' 'n' and the closing '}' ']'),
// the low 56 bits a payload. Containers hold the index just past their closing word in the low
// 32 bits and a count saturated at 2^24-1 in the next 24; strings hold an offset into the
// string buffer, where a 32-bit length precedes the bytes; numbers take a second word. Swift
// walks the tape directly, so nothing is copied or converted per value.
#ifndef TALLY_CSIMDJSON_H
#define TALLY_CSIMDJSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bytes that must be readable after the end of any buffer passed with `padded != 0`.
#define TJ_PADDING 64

typedef struct tj_parser tj_parser;

tj_parser *tj_parser_create(void);
void tj_parser_destroy(tj_parser *parser);

/// Parses one JSON document. When `padded` is 0 the bytes are first copied into a padded buffer
/// owned by the parser; otherwise `TJ_PADDING` bytes after `data + length` must be readable.
/// Returns 0 on success, or a simdjson error code; `tj_error_message` describes it.
/// The tape and strings stay valid until the next call on this parser.
int tj_parse(tj_parser *parser, const char *data, size_t length, int padded);

/// The tape of the last successful parse. Word 0 is the root marker; the value starts at 1.
const uint64_t *tj_tape(const tj_parser *parser);
/// The string buffer the tape's string words point into.
const uint8_t *tj_string_buffer(const tj_parser *parser);
const char *tj_error_message(int code);

#ifdef __cplusplus
}
#endif
#endif
