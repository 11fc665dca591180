// Any object by its global id: a fragment on the Node interface. The type-specific fragments are spread with
// @alias, so each is a nullable property that is set only when the node is of that type.
import { graphql } from 'relay-runtime';

export const nodeViewFragment = graphql`
  fragment NodeView_node on Node {
    __typename
    id
    ...PageCard_page @alias(as: "page")
    ...DocumentLine_document @alias(as: "document")
    ... on MeetingPage {
      text
    }
    ... on Municipality {
      subdomain
      name
      state
    }
  }
`;

export const nodeViewQuery = graphql`
  query NodeViewQuery($id: ID!) {
    node(id: $id) {
      ...NodeView_node
    }
  }
`;
