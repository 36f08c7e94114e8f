from . import conventions, output_size, stack
TOPICS = {m.TOPIC.name: m.TOPIC for m in (stack, conventions, output_size)}
def explain(topic, **options):
    return TOPICS[topic].explain(**options)
