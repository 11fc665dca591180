// The GraphQL operations the search page sends.

export const SEARCH = `
query Search($query: String!, $filter: SearchFilter, $orderBy: SearchOrder,
             $first: Int, $after: String, $last: Int, $before: String) {
  search(query: $query, filter: $filter, orderBy: $orderBy,
         first: $first, after: $after, last: $last, before: $before) {
    totalCount { value exact }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges {
      cursor
      headline
      node {
        id
        pageNumber
        pageImage
        document {
          id
          meetingName
          meetingDate
          documentType
          municipality { subdomain name state }
        }
      }
    }
  }
}`;

export const PAGE = `
query Page($id: ID!) {
  node(id: $id) {
    __typename
    ... on MeetingPage {
      id
      sourceId
      pageNumber
      pageImage
      text
      document {
        meetingName
        meetingDate
        documentType
        municipality { subdomain name state }
      }
    }
  }
}`;

export const MUNICIPALITIES = `
query Municipalities($after: String) {
  municipalities(first: 100, after: $after) {
    edges { node { subdomain name state } }
    pageInfo { hasNextPage endCursor }
  }
}`;
