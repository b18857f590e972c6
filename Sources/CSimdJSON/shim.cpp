#include "CSimdJSON.h"
#include <simdjson.h>
#include <cstring>
#include <new>
#include <vector>

struct tj_parser {
    simdjson::dom::parser parser;
    std::vector<char> copy;
};

extern "C" {

tj_parser *tj_parser_create(void) { return new (std::nothrow) tj_parser(); }

void tj_parser_destroy(tj_parser *parser) { delete parser; }

int tj_parse(tj_parser *p, const char *data, size_t length, int padded) {
    const char *input = data;
    if (!padded) {
        if (p->copy.size() < length + TJ_PADDING) p->copy.resize(length + TJ_PADDING);
        if (length > 0) std::memcpy(p->copy.data(), data, length);
        std::memset(p->copy.data() + length, 0, TJ_PADDING);
        input = p->copy.data();
    }
    if (length > p->parser.capacity()) {
        simdjson::error_code growError = p->parser.allocate(length < 4096 ? 4096 : length);
        if (growError) return int(growError);
    }
    simdjson::dom::element root;
    return int(p->parser.parse(input, length, false).get(root));
}

const uint64_t *tj_tape(const tj_parser *p) { return p->parser.doc.tape.get(); }

const uint8_t *tj_string_buffer(const tj_parser *p) { return p->parser.doc.string_buf.get(); }

const char *tj_error_message(int code) {
    return simdjson::error_message(simdjson::error_code(code));
}

} // extern "C"
