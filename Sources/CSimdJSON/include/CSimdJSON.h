// A flat C view of simdjson's DOM: parse a document and walk it as an array of tokens.
// Swift reads the tokens through one pointer, so no per-value call crosses the language boundary.
#ifndef TALLY_CSIMDJSON_H
#define TALLY_CSIMDJSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Token kinds.
#define TJ_OBJECT_KIND 1  // length: field count; next: index after the object's last token
#define TJ_ARRAY_KIND 2   // length: element count; next: index after the array's last token
#define TJ_KEY_KIND 3     // v.str, length: a field name (unescaped)
#define TJ_STRING_KIND 4  // v.str, length: a string value (unescaped UTF-8)
#define TJ_INT64_KIND 5
#define TJ_UINT64_KIND 6  // v.u, only for values above INT64_MAX
#define TJ_DOUBLE_KIND 7
#define TJ_TRUE_KIND 8
#define TJ_FALSE_KIND 9
#define TJ_NULL_KIND 10

/// Bytes that must be readable after the end of any buffer passed with `padded != 0`.
#define TJ_PADDING 64

typedef struct tj_token {
    uint8_t kind;
    uint8_t reserved[3];
    uint32_t length;
    uint32_t next;     // for every token: the index of the token after this value (and its children)
    uint32_t reserved2;
    union {
        const char *str;
        int64_t i;
        uint64_t u;
        double d;
    } v;
} tj_token;

typedef struct tj_parser tj_parser;

tj_parser *tj_parser_create(void);
void tj_parser_destroy(tj_parser *parser);

/// Parses one JSON document. When `padded` is 0 the bytes are first copied into a padded buffer
/// owned by the parser; otherwise `TJ_PADDING` bytes after `data + length` must be readable.
/// Returns 0 on success, or a simdjson error code; `tj_error_message` describes it.
/// Tokens and strings stay valid until the next call on this parser.
int tj_parse(tj_parser *parser, const char *data, size_t length, int padded);

const tj_token *tj_tokens(const tj_parser *parser);
size_t tj_token_count(const tj_parser *parser);
const char *tj_error_message(int code);

#ifdef __cplusplus
}
#endif
#endif
