#include "CSimdJSON.h"
#include <simdjson.h>
#include <cstring>
#include <vector>

struct tj_parser {
    simdjson::dom::parser parser;
    std::vector<tj_token> tokens;
    std::vector<char> copy;
};

namespace {

void emit(tj_parser *p, simdjson::dom::element element);

inline tj_token &push(tj_parser *p, uint8_t kind) {
    p->tokens.emplace_back();
    tj_token &t = p->tokens.back();
    std::memset(&t, 0, sizeof t);
    t.kind = kind;
    return t;
}

void emit(tj_parser *p, simdjson::dom::element element) {
    using simdjson::dom::element_type;
    size_t at = p->tokens.size();
    switch (element.type()) {
    case element_type::OBJECT: {
        simdjson::dom::object object = element.get_object().value_unsafe();
        push(p, TJ_OBJECT_KIND).length = uint32_t(object.size());
        for (auto field : object) {
            size_t keyAt = p->tokens.size();
            tj_token &key = push(p, TJ_KEY_KIND);
            key.v.str = field.key.data();
            key.length = uint32_t(field.key.size());
            key.next = uint32_t(keyAt + 1);
            emit(p, field.value);
        }
        break;
    }
    case element_type::ARRAY: {
        simdjson::dom::array array = element.get_array().value_unsafe();
        push(p, TJ_ARRAY_KIND).length = uint32_t(array.size());
        for (auto child : array) emit(p, child);
        break;
    }
    case element_type::STRING: {
        std::string_view s = element.get_string().value_unsafe();
        tj_token &t = push(p, TJ_STRING_KIND);
        t.v.str = s.data();
        t.length = uint32_t(s.size());
        break;
    }
    case element_type::INT64: push(p, TJ_INT64_KIND).v.i = element.get_int64().value_unsafe(); break;
    case element_type::UINT64: push(p, TJ_UINT64_KIND).v.u = element.get_uint64().value_unsafe(); break;
    case element_type::DOUBLE: push(p, TJ_DOUBLE_KIND).v.d = element.get_double().value_unsafe(); break;
    case element_type::BOOL: push(p, element.get_bool().value_unsafe() ? TJ_TRUE_KIND : TJ_FALSE_KIND); break;
    case element_type::NULL_VALUE: push(p, TJ_NULL_KIND); break;
    }
    p->tokens[at].next = uint32_t(p->tokens.size());
}

} // namespace

extern "C" {

tj_parser *tj_parser_create(void) { return new (std::nothrow) tj_parser(); }

void tj_parser_destroy(tj_parser *parser) { delete parser; }

int tj_parse(tj_parser *p, const char *data, size_t length, int padded) {
    p->tokens.clear();
    const char *input = data;
    if (!padded) {
        if (p->copy.size() < length + TJ_PADDING) p->copy.resize(length + TJ_PADDING);
        std::memcpy(p->copy.data(), data, length);
        std::memset(p->copy.data() + length, 0, TJ_PADDING);
        input = p->copy.data();
    }
    if (length > p->parser.capacity()) {
        simdjson::error_code growError = p->parser.allocate(length < 4096 ? 4096 : length);
        if (growError) return int(growError);
    }
    simdjson::dom::element root;
    simdjson::error_code error = p->parser.parse(input, length, false).get(root);
    if (error) return int(error);
    emit(p, root);
    return 0;
}

const tj_token *tj_tokens(const tj_parser *p) { return p->tokens.data(); }

size_t tj_token_count(const tj_parser *p) { return p->tokens.size(); }

const char *tj_error_message(int code) {
    return simdjson::error_message(simdjson::error_code(code));
}

} // extern "C"
