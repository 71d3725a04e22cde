"""Input that does not fit the schema, named by its path and the rule it breaks.

GraphQL's own messages repeat the value a client sent ("Variable '$i' got invalid value
{'bsn': ...}"), and the contract lets no answer echo a BSN, an e-mail or anything else a
client sent. The checks here find the same faults as graphql-core's variable coercion and
its ValuesOfCorrectType and ProvidedRequiredArguments rules, and describe each one as
``input.caregiver.name: required``, never by its content."""
from graphql import (GraphQLError, ListValueNode, NullValueNode, ObjectValueNode, Undefined,
                     ValidationRule, VariableNode, is_enum_type,
                     is_input_object_type, is_input_type, is_list_type, is_non_null_type,
                     is_required_argument, is_required_input_field, specified_rules,
                     type_from_ast, value_from_ast)
from graphql.validation import ProvidedRequiredArgumentsRule, ValuesOfCorrectTypeRule

REQUIRED = "required"
# At most this many faults are named in one answer; a list of thousands adds nothing.
MAX_PROBLEMS = 20

SCALAR_RULES = {
    "String": "must be a string",
    "ID": "must be a string or a whole number",
    "Int": "must be a whole number from -2147483648 to 2147483647",
    "Float": "must be a number",
    "Boolean": "must be true or false",
    "Date": "must be a date, YYYY-MM-DD",
    "DateTime": "must be a date and time in ISO 8601 with its offset",
    "Decimal": 'must be a decimal number written as a string, such as "12.34"',
}


def field_path(path):
    """['input', 'purposes', 1] -> 'input.purposes.1'"""
    return ".".join(str(part) for part in path)


def problem_message(path, rule):
    return f"{field_path(path)}: {rule}"


def _leaf_rule(type_):
    if is_enum_type(type_):
        return "must be one of " + ", ".join(type_.values)
    return SCALAR_RULES.get(type_.name, f"must be a valid {type_.name}")


def _object_rule(type_):
    return f"must be an object ({type_.name})"


def _unknown_field_rule(type_):
    # The unknown key itself is not repeated: it is something the client sent.
    return f"has a field that {type_.name} does not define (it has {', '.join(type_.fields)})"


def _fits_leaf(value, type_):
    try:
        return type_.parse_value(value) is not Undefined
    except Exception:   # graphql-core's scalars and enums raise on what does not fit
        return False


def _object_problems(given, type_, path, problems_of):
    """The fields of an input object, ``given`` by name: each checked with ``problems_of``,
    the required ones that are missing, and any the type does not define."""
    for name, field in type_.fields.items():
        if name in given:
            yield from problems_of(given[name], field.type, [*path, name])
        elif is_required_input_field(field):
            yield [*path, name], REQUIRED
    if any(name not in type_.fields for name in given):
        yield path, _unknown_field_rule(type_)


def value_problems(value, type_, path):
    """(path, rule) for each fault of a variable's JSON value against its input type."""
    if is_non_null_type(type_):
        if value is None:
            yield path, REQUIRED
            return
        type_ = type_.of_type
    if value is None:
        return
    if is_list_type(type_):
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from value_problems(item, type_.of_type, [*path, index])
        else:   # GraphQL takes a single value as a list of one
            yield from value_problems(value, type_.of_type, path)
    elif is_input_object_type(type_):
        if not isinstance(value, dict):
            yield path, _object_rule(type_)
            return
        yield from _object_problems(value, type_, path, value_problems)
    elif not _fits_leaf(value, type_):
        yield path, _leaf_rule(type_)


def literal_problems(node, type_, path):
    """(path, rule) for each fault of a value written in the query against its input type.
    Variables inside it are checked by their own type (value_problems)."""
    if isinstance(node, VariableNode):
        return
    if is_non_null_type(type_):
        if isinstance(node, NullValueNode):
            yield path, REQUIRED
            return
        type_ = type_.of_type
    if isinstance(node, NullValueNode):
        return
    if is_list_type(type_):
        if isinstance(node, ListValueNode):
            for index, item in enumerate(node.values):
                yield from literal_problems(item, type_.of_type, [*path, index])
        else:
            yield from literal_problems(node, type_.of_type, path)
    elif is_input_object_type(type_):
        if not isinstance(node, ObjectValueNode):
            yield path, _object_rule(type_)
            return
        given = {field.name.value: field.value for field in node.fields}
        yield from _object_problems(given, type_, path, literal_problems)
    elif value_from_ast(node, type_) is Undefined:
        yield path, _leaf_rule(type_)


def variable_problems(schema, operation, values):
    """The faults of the request's variables, as GraphQLErrors naming path and rule."""
    errors = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(schema, definition.type)
        if type_ is None or not is_input_type(type_):
            continue   # validation has refused the query already
        if name not in values:
            if definition.default_value is None and is_non_null_type(type_):
                errors.append(input_error([name], REQUIRED, definition))
            continue
        for path, rule in value_problems(values[name], type_, [name]):
            errors.append(input_error(path, rule, definition))
    return errors[:MAX_PROBLEMS]


def input_error(path, rule, node=None):
    return GraphQLError(problem_message(path, rule), nodes=node,
                        extensions={"code": "BAD_USER_INPUT", "field": field_path(path)})


class InputValuesRule(ValidationRule):
    """Argument values written in the query, default values of variables and missing
    required arguments, each named by path and rule."""

    def enter_argument(self, node, *_args):
        argument = self.context.get_argument()
        if argument is not None:
            self._report(literal_problems(node.value, argument.type, [node.name.value]), node)

    def enter_variable_definition(self, node, *_args):
        type_ = type_from_ast(self.context.schema, node.type)
        if node.default_value is not None and type_ is not None and is_input_type(type_):
            self._report(literal_problems(node.default_value, type_, [node.variable.name.value]),
                         node)

    def leave_field(self, node, *_args):
        self._require_arguments(node, self.context.get_field_def())

    def leave_directive(self, node, *_args):
        self._require_arguments(node, self.context.get_directive())

    def _require_arguments(self, node, definition):
        if definition is None:
            return
        given = {argument.name.value for argument in node.arguments or ()}
        missing = (([name], REQUIRED) for name, argument in definition.args.items()
                   if name not in given and is_required_argument(argument))
        self._report(missing, node)

    def _report(self, problems, node):
        for path, rule in problems:
            self.report_error(input_error(path, rule, node))


# graphql-core's rules for the same faults quote the offending value: replaced by ours.
VALIDATION_RULES = tuple(
    [rule for rule in specified_rules
     if rule not in (ValuesOfCorrectTypeRule, ProvidedRequiredArgumentsRule)]
    + [InputValuesRule])
